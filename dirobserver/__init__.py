"""
dirobserver: watch directories, announce every new file in Redis.

The packages follow the flow of an event:

  - L{dirobserver.sources}: where events come from (inotify, polling, trees);
  - L{dirobserver.announce}: how names become events (monitors, complete
    files, listings, the event's JSON form);
  - L{dirobserver.redis}: the writer and everything that talks to Redis;
  - L{dirobserver.app}: what twistd runs (options, the service tree, reload,
    exits, the embedded server);
  - L{dirobserver.config}: the configuration file and its keys;
  - L{dirobserver.ops}: metrics, health endpoints, systemd, logs;
  - L{dirobserver.util}: generic mechanisms (periodic work, backoff, counters).

docs/design.md has the picture of the layout, module by module.
"""

#: dirobserver's version: the one place it is written.  setup.py reads it
#: from this file's text (without importing the package); C{--version}, the
#: start-up line and the C{dirobserver_build_info} metric show it.
__version__ = "0.1.0"
