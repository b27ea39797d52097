"""
Redis: the batching writer, the events it holds, queue types (list and
stream), what a refused transaction means, the connection and its protocol,
Sentinel, TLS.
"""
