"""
C{--log-level} and C{--log-format} for the twistd plugin.

twistd owns the log observers: it builds one in C{AppLogger.start}, before
the application starts and before it daemonizes, from its own options
(C{--logfile}, C{--syslog}, C{-n}).  The only hook that covers every line the
process writes, twistd's own "Starting reactor" and "Main loop terminated"
included, is twistd's C{--logger} option: the dotted name of a factory,
called with no argument, that returns the observer.  twistd parses the
plugin's options (and runs their C{postOptions}) inside its own
C{parseOptions}, before its own C{postOptions} resolves C{logger} with
C{namedAny}; and the plugin's options know twistd's as C{self.parent}.  So
L{configure}, called from the plugin's C{postOptions}, sets the parent's
C{logger} to the name of L{make_observer} and remembers what it needs in
this module, since the factory takes no argument.

L{make_observer} builds what twistd would have built (standard output under
C{-n} without C{--logfile} or with C{--logfile=-}; otherwise the
C{--logfile} file, default C{twistd.log}, with twistd's rotation: at 1 MB
and on C{SIGUSR1}; or syslog with C{--syslog}), writes text as twistd does
or one JSON object per line, and drops everything below the chosen level.
Twisted's own lines about a listening port (C{_QuietSite starting on 9108},
C{(TCP Port 9108 Closed)}) are written at C{--log-level=debug} only: Twisted
logs them whatever the factory's C{noisy} says, and they puzzle more than
they tell (the metrics endpoint logs its own line, L{dirobserver.ops.http}).

A JSON line has the keys C{time} (ISO 8601, UTC, microseconds, with the
C{+00:00} offset), C{level} (C{debug}, C{info}, C{warn}, C{error},
C{critical}), C{namespace} (the logger's, e.g. C{dirobserver.redis.writer}),
C{message} (the rendered text) and, when the event carries one, C{failure}
(the traceback, as one string).  The line is ASCII: non-ASCII text and file
names that are not UTF-8 are JSON escapes.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    textFileLogObserver,
)
from twisted.python import logfile

if TYPE_CHECKING:
    from twisted.python.log import ILogObserver as ILegacyLogObserver

#: The values of C{--log-level}, lowest first ("warning" is accepted too).
LEVELS = {level.name: level for level in LogLevel.iterconstants()}

#: The values of C{--log-format}.
FORMATS = ("text", "json")

#: Entries for the plugin's C{Options.optParameters}.
OPT_PARAMETERS = [
    [
        "log-level", None, "info",
        "Lowest level written: debug, info, warn, error or critical. "
        "Applies to every line, twistd's own included.",
    ],
    [
        "log-format", None, "text",
        "text (twistd's format) or json (one JSON object per line: time, "
        "level, namespace, message, failure).",
    ],
]


class LogOptionsError(ValueError):
    """A log option that cannot be used; the message is one line."""


@dataclass(frozen=True)
class LogSettings:
    """
    What C{--log-level} and C{--log-format} asked for.

    @ivar level: the lowest level written.
    @ivar fmt: C{"text"} or C{"json"}.
    """

    level: LogLevel = LogLevel.info
    fmt: str = "text"


def parse(level: str, fmt: str) -> LogSettings:
    """
    Check the two option values (case does not matter).

    @raise LogOptionsError: a value that is not one of the choices.
    """
    name = level.strip().lower()
    name = "warn" if name == "warning" else name
    if name not in LEVELS:
        raise LogOptionsError(f"--log-level={level}: use one of {', '.join(LEVELS)}")
    form = fmt.strip().lower()
    if form not in FORMATS:
        raise LogOptionsError(f"--log-format={fmt}: use one of {', '.join(FORMATS)}")
    return LogSettings(LEVELS[name], form)


# What make_observer() builds: set by configure(), read when twistd calls
# the factory.  Module state because twistd takes a dotted name and calls it
# with no argument.
_pending: tuple[LogSettings, Mapping[str, Any]] | None = None


def configure(options: Mapping[str, Any]) -> LogSettings:
    """
    Check the log options and hand twistd the observer that applies them.

    Call it from the plugin's C{postOptions}.  Under twistd (C{options.parent}
    is twistd's C{ServerOptions}) it sets the parent's C{logger} option to
    L{make_observer}; elsewhere (tests, the options parsed alone) it only
    checks the values.

    @param options: the plugin's options, with C{log-level} and C{log-format}.
    @raise LogOptionsError: a bad value, or a combination twistd cannot do.
    """
    global _pending
    settings = parse(options["log-level"], options["log-format"])
    parent = getattr(options, "parent", None)
    if parent is None:
        return settings
    if parent.get("logger"):
        # The user named an observer factory of their own: it wins, and
        # options that only ours would honour must not be silently ignored.
        if settings != LogSettings():
            raise LogOptionsError("--log-level and --log-format cannot be used with twistd's --logger")
        return settings
    if settings.fmt == "json" and parent.get("syslog"):
        raise LogOptionsError("--log-format=json writes to a file or standard output, not to --syslog")
    if parent.get("logfile") == "-" and not (parent.get("nodaemon") or parent.get("debug")):
        raise LogOptionsError("a daemon cannot log to standard output: use -n or --logfile=PATH")
    _pending = (settings, parent)
    parent["logger"] = f"{__name__}.{make_observer.__name__}"
    return settings


def make_observer() -> ILogObserver:
    """
    The C{--logger} factory twistd calls: the observer L{configure} asked for.
    """
    if _pending is None:  # named with --logger by hand, without the plugin
        return build_observer(LogSettings(), {"nodaemon": True})
    settings, server_options = _pending
    return build_observer(settings, server_options)


def build_observer(settings: LogSettings, server_options: Mapping[str, Any]) -> ILogObserver:
    """
    The observer for C{settings}, writing where twistd's own would.

    @param server_options: twistd's options (C{logfile}, C{nodaemon},
        C{syslog}, C{prefix}); read now, after twistd has settled them.
    """
    if server_options.get("syslog"):
        from twisted.python import syslog

        legacy = syslog.SyslogObserver(server_options.get("prefix") or "twisted")
        # A legacy observer is any callable taking the event dict; a bound
        # method cannot declare that it provides the zope interface.
        inner: ILogObserver = LegacyLogObserverWrapper(cast("ILegacyLogObserver", legacy.emit))
    else:
        out = _output(server_options)
        inner = FileLogObserver(out, json_line) if settings.fmt == "json" else textFileLogObserver(out)
    predicates: list[Any] = [LogLevelFilterPredicate(defaultLogLevel=settings.level)]
    if settings.level > LogLevel.debug:
        predicates.insert(0, _not_port_lines)
    return FilteringLogObserver(inner, predicates)


#: The text of Twisted's lines about a listening port: C{tcp.Port} and
#: C{unix.Port} write them with the legacy C{log.msg}, unconditionally.
_PORT_LINE = re.compile(r"\S+ starting on \S+|\((TCP|UNIX|UDP|SSL) Port \S+ Closed\)")


def _not_port_lines(event: LogEvent) -> PredicateResult:
    """Drop Twisted's port lines (above C{debug}, see the module docstring)."""
    if event.get("log_namespace") == "log_legacy" and _PORT_LINE.fullmatch(str(event.get("log_text", ""))):
        return PredicateResult.no
    return PredicateResult.maybe


def _output(server_options: Mapping[str, Any]) -> IO[Any]:
    """Standard output or the log file, chosen as twistd's UnixAppLogger does."""
    path = server_options.get("logfile") or ""
    nodaemon = server_options.get("nodaemon")
    if path == "-":
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    if nodaemon and not path:
        return sys.stdout
    log_file = logfile.LogFile.fromFullPath(path or "twistd.log")
    # Same as twistd: SIGUSR1 reopens the file after a rotation, unless
    # someone else handles the signal.
    if not signal.getsignal(signal.SIGUSR1):
        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor
            from twisted.internet.interfaces import IReactorThreads

            # The signal may arrive in the middle of a write: rotate from the
            # reactor's loop, as twistd does.
            IReactorThreads(reactor).callFromThread(log_file.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return log_file


def json_line(event: LogEvent) -> str:
    """One event as one line of JSON (see the module docstring)."""
    level = event.get("log_level")
    failure = event.get("log_failure")
    if event.get("log_format") == "{log_text}" and event.get("isError") and event.get("failure") is not None:
        # A legacy log.err(): its rendered text is "why" plus the traceback;
        # keep the traceback out of the message, in "failure".
        failure = event["failure"]
        message = str(event.get("why") or "Unhandled Error")
    else:
        message = formatEvent(event)
    when = datetime.fromtimestamp(event.get("log_time") or time.time(), timezone.utc)
    record = {
        "time": when.isoformat(timespec="microseconds"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace") or "",
        "message": message,
    }
    if failure is not None:
        try:
            record["failure"] = failure.getTraceback()
        except Exception as e:  # a broken failure must not lose the line
            record["failure"] = f"(traceback unavailable: {e!r})"
    return json.dumps(record) + "\n"
