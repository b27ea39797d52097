"""
Running the command on one file: no shell, its own process group, a timeout.

The command line is the operator's, each C{{}} in an argument replaced by
the file's path; without any C{{}}, the path is the last argument.  It runs
with Twisted's C{spawnProcess} (no shell: a name with spaces or C{;} is one
argument), standard input closed, standard output discarded, the last
lines of standard error kept for the log line of a failure.

Its own process group, so that C{--timeout} (and a stop that cannot wait)
kills the command and everything it started: C{spawnProcess} offers no
C{setsid}, so the command is started through C{setsid(1)} (util-linux),
which makes the group and then becomes the command (C{exec}, same process,
no fork: the child of the worker is no group leader).  Without C{setsid(1)}
a small Python trampoline does the same, at the cost of an interpreter start
per file.  Once the command has exited, what is left of its group is killed
too: nothing it started outlives it holding the file.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from dirobserver.util.reactor import IDaemonReactor

#: Bytes of standard error kept (the end of it).
STDERR_KEPT = 4096

#: Lines of standard error shown in a failure's log line.
STDERR_LINES = 5

_TRAMPOLINE = "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"


def arguments(command: Sequence[str], path: str) -> list[str]:
    """The command's arguments for C{path}: C{{}} replaced, or C{path} appended."""
    if any("{}" in arg for arg in command[1:]):
        return [command[0], *(arg.replace("{}", path) for arg in command[1:])]
    return [*command, path]


def group_launcher() -> list[str]:
    """What starts a command in a new process group (see the module docstring)."""
    setsid = shutil.which("setsid")
    if setsid is not None:
        return [setsid]
    return [sys.executable, "-c", _TRAMPOLINE]


@dataclass(frozen=True)
class Outcome:
    """
    How a command ended.

    @ivar status: its exit status, or None when a signal ended it.
    @ivar signal: the signal's number, or None.
    @ivar timed_out: it ran past C{--timeout} (and was killed).
    @ivar stderr: the last lines of its standard error.
    @ivar duration: seconds it ran.
    @ivar problem: it could not be started (one line), else None.
    """

    status: int | None
    signal: int | None
    timed_out: bool
    stderr: str
    duration: float
    problem: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == 0 and not self.timed_out and self.problem is None

    def describe(self) -> str:
        """C{exit 0}, C{exit 3}, C{killed by SIGKILL (timeout)}..."""
        if self.problem is not None:
            return f"not started ({self.problem})"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            why = " (timeout)" if self.timed_out else ""
            return f"killed by {name}{why}"
        return f"exit {self.status}" + (" (timeout)" if self.timed_out else "")


class _Command(protocol.ProcessProtocol):
    def __init__(self, reactor: IDaemonReactor, timeout: float | None) -> None:
        self._reactor = reactor
        self.ended: defer.Deferred[Outcome] = defer.Deferred()
        self._stderr = b""
        self._started = reactor.seconds()
        self._timer: IDelayedCall | None = None
        if timeout is not None:
            self._timer = reactor.callLater(timeout, self.kill)
        self._killed = False
        self._pid: int | None = None

    def connectionMade(self) -> None:
        self._pid = self.transport.pid  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def errReceived(self, data: bytes) -> None:
        self._stderr = (self._stderr + data)[-STDERR_KEPT:]

    def kill(self) -> None:
        """C{--timeout}: kill the command's whole process group."""
        self._killed = True
        self._kill_group()

    def _kill_group(self) -> None:
        if self._pid is None:
            return
        try:
            os.killpg(self._pid, signal.SIGKILL)
        except OSError:
            pass  # the group is gone already

    def processExited(self, reason: Failure) -> None:
        # Whatever the command left running in its group goes with it (and
        # so do the pipes it held open, which processEnded waits for).
        self._kill_group()

    def processEnded(self, reason: Failure) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        value = reason.value
        status = getattr(value, "exitCode", 0) if isinstance(value, error.ProcessTerminated) else 0
        number = getattr(value, "signal", None)
        tail = self._stderr.decode("utf-8", "replace").rstrip().splitlines()[-STDERR_LINES:]
        self.ended.callback(Outcome(
            status=None if number is not None else status,
            signal=number,
            timed_out=self._killed,
            stderr=" | ".join(tail),
            duration=self._reactor.seconds() - self._started,
        ))


class Running:
    """One command under way: L{ended} fires with its L{Outcome}."""

    def __init__(self, process: _Command) -> None:
        self.ended = process.ended


def start(
    reactor: IDaemonReactor,
    launcher: Sequence[str],
    executable: str,
    argv: Sequence[str],
    timeout: float | None,
) -> Running:
    """
    Start C{argv} (C{argv[0]} resolved to C{executable}) in its own process group.
    """
    command = _Command(reactor, timeout)
    args = [*launcher, executable, *argv[1:]]
    try:
        reactor.spawnProcess(command, args[0], args, env=os.environ.copy(),
                             childFDs={0: "w", 1: "r", 2: "r"})
    except OSError as e:
        if command._timer is not None:
            command._timer.cancel()
        command.ended.callback(Outcome(None, None, False, "", 0.0, problem=str(e)))
    return Running(command)
