"""
The application: the twistd plugin's options, the service tree and the
observer's core, reload, exit statuses, the historical script, and the
embedded Redis server.
"""
