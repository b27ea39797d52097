"""
The worker plugin's options and service factory::

    twistd -n dirobserver-worker --config=FILE --section=NAME [--jobs=N]
        (--done=DIR | --delete) --failed=DIR [--timeout=SECONDS]
        [--reclaim-after=SECONDS] [--group=NAME] [--metrics=ENDPOINT] -- COMMAND [ARG...]

As for the observer (L{dirobserver.app.tap}), everything is checked while
the options are parsed, before twistd daemonizes or anything starts: a bad
value is one line on standard error and exit status 78 (C{EX_CONFIG}).
The section's Redis settings, queue, queue type and directory are read from
the observer's configuration file, with the observer's own loader.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (see dirobserver.app.tap: imported before --uid)
import os
import shutil
from typing import NoReturn, cast

from twisted.python import usage

from dirobserver.app.exits import EXIT_CANNOT_LISTEN
from dirobserver.app.options import check_shared, fail
from dirobserver.config import settings as config
from dirobserver.ops import logs
from dirobserver.util.reactor import IDaemonReactor
from dirobserver.worker import claim
from dirobserver.worker.service import WorkerService
from dirobserver.worker.settings import WorkerConfig

#: C{--reclaim-after}'s default, in seconds.
RECLAIM_AFTER = 300.0

#: C{--group}'s default (stream queues).
GROUP = "dirobserver-workers"


class Options(usage.Options):
    """Command line of the C{dirobserver-worker} twistd plugin."""

    synopsis = ("--config=FILE --section=NAME [--jobs=N] (--done=DIR | --delete) --failed=DIR "
                "[--timeout=SECONDS] [--reclaim-after=SECONDS] [--group=NAME] "
                "[--metrics=ENDPOINT] -- COMMAND [ARG...]")
    longdesc = (
        "Run COMMAND on each file announced in the queue of a section of the observer's "
        "configuration, once, then move the file into --done (or delete it) or --failed. "
        "{} in an argument is replaced by the file's path; without {}, the path is the last "
        "argument. No shell is involved."
    )
    optParameters = [
        ["config", "c", None, "Path of the observer's configuration file."],
        ["section", "s", None, "The section whose queue to consume."],
        ["jobs", "j", 1, "Commands run at a time."],
        ["done", None, None, "Where files whose command exited 0 go (their relative path kept)."],
        ["failed", None, None, "Where files whose command failed go (their relative path kept)."],
        ["timeout", None, None, "Kill a command (its process group) after this many seconds; "
         "its file goes to --failed."],
        ["reclaim-after", None, RECLAIM_AFTER, "Seconds after which the events of a worker that "
         "stopped renewing its claim are taken over."],
        ["group", None, GROUP, "Consumer group (stream queues)."],
        ["metrics", None, None, "Serve /metrics, /livez and /readyz on this Twisted server "
         "endpoint, e.g. tcp:9109:interface=127.0.0.1 (default: off)."],
        *logs.OPT_PARAMETERS,
    ]
    optFlags = [["delete", None, "Delete files whose command exited 0 (instead of --done)."]]

    def __init__(self) -> None:
        super().__init__()
        self["command"] = ()

    def parseArgs(self, *command: str) -> None:
        self["command"] = command

    def opt_jobs(self, value: str) -> None:
        self["jobs"] = _number(value, int, "--jobs")

    def opt_timeout(self, value: str) -> None:
        self["timeout"] = _number(value, float, "--timeout")

    def opt_reclaim_after(self, value: str) -> None:
        self["reclaim-after"] = _number(value, float, "--reclaim-after")

    def postOptions(self) -> None:
        check_shared(self, "dirobserver-worker")
        if not self["section"]:
            _fail("no section given: use --section=NAME")
        try:
            settings = config.load(self["config"])
        except config.ConfigError as e:
            _fail(str(e))
        sections = {s.name: s for s in settings.sections}
        section = sections.get(self["section"])
        if section is None:
            _fail(f"{self['config']}: no active section [{self['section']}] (active: "
                  f"{', '.join(sorted(sections))})")
        if settings.redis.tls:
            from dirobserver.redis import tls

            problem = tls.check(settings.redis)
            if problem is not None:
                _fail(f"{self['config']}: {problem}")
        if bool(self["done"]) == bool(self["delete"]):
            _fail("give either --done=DIR or --delete (one of them)")
        if not self["failed"]:
            _fail("no --failed=DIR given: where files whose command failed go")
        done = _directory(self["done"], "--done") if self["done"] else None
        failed = _directory(self["failed"], "--failed")
        command = tuple(self["command"])
        if not command:
            _fail("no command given: put it after --, e.g. -- gzip {}")
        executable = _executable(command[0])
        self["worker"] = WorkerConfig(
            section=section.name, queue=section.queue, queue_type=section.queue_type,
            directories=tuple(s.directory for s in settings.sections if s.queue == section.queue),
            redis=settings.redis, command=command, executable=executable, jobs=self["jobs"],
            done=done, failed=failed, timeout=self["timeout"], reclaim_after=self["reclaim-after"],
            group=self["group"], worker_id=claim.new_worker_id(),
        )


def _number(text: str, kind: type, option: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        _fail(f"{option}={text}: not a number")
    if not value > 0:
        _fail(f"{option}={text}: must be more than 0")
    return cast(float, value)


def _directory(path: str, option: str) -> str:
    """C{path} made absolute, created if needed, and writable; else one line and exit 78."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        _fail(f"{option}={path}: cannot be created ({e.strerror})")
    if not os.access(path, os.W_OK | os.X_OK):
        _fail(f"{option}={path}: not writable")
    return path


def _executable(name: str) -> str:
    """The program C{name} runs (a path, or looked up in C{PATH}); else one line and exit 78."""
    if "/" in name:
        if not os.path.isfile(name):
            _fail(f"command {name}: no such file")
        if not os.access(name, os.X_OK):
            _fail(f"command {name}: not executable")
        return os.path.abspath(name)
    found = shutil.which(name)
    if found is None:
        _fail(f"command {name}: not found in PATH")
    return found


def _fail(message: str) -> NoReturn:
    fail("dirobserver-worker", message)


def makeService(options: Options) -> WorkerService:
    """Build the worker; nothing is opened until it starts."""
    from twisted.internet import reactor as installed

    reactor = cast(IDaemonReactor, installed)
    worker = WorkerService(options["worker"], reactor)
    if options["metrics"]:
        from dirobserver.ops.http import MetricsService
        from dirobserver.worker.metrics import WorkerProbe

        probe = WorkerProbe(worker)
        MetricsService(options["metrics"], probe, reactor, EXIT_CANNOT_LISTEN,
                       probe.registry).setServiceParent(worker)
    return worker
