"""
The embedded server as a child process: how it is launched, and what it says.

L{launch_argv} is the command line: a scratch valkey-server (nothing on
disk, in its private directory, in the foreground) started through a tiny
Python launcher that then execs it under the same pid.  The launcher does two
things Twisted's C{spawnProcess} cannot:

 - C{setsid()}: the server leaves the terminal's process group, so a Ctrl-C
   meant for twistd does not also kill the server behind our back; it stops
   when the service tells it to;
 - C{PR_SET_PDEATHSIG}: if the daemon dies without stopping its services
   (SIGKILL, crash), the kernel sends the server SIGTERM instead of leaving
   an orphan holding the port.  The setting survives C{execve()}.

Both are best effort: if either fails the server still starts.

L{ServerOutput} relays the child's output, line by line, and its end to the
callbacks it is built with (the service,
L{dirobserver.app.embedded_redis.EmbeddedRedis}, decides what they mean).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

_LAUNCHER = """\
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    os.setsid()
except OSError:
    pass
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except Exception:
    pass
if os.getppid() != parent:
    sys.exit(70)  # the daemon died before we could arm PDEATHSIG
os.execv(sys.argv[2], sys.argv[2:])
"""


def launch_argv(binary: str, host: str, port: int, directory: str) -> list[str]:
    """
    The command line that runs C{binary} as a scratch server, child of this
    process, through the launcher (C{sys.executable} is the program to run).

    @param directory: the server's private working directory.
    """
    server_args = [
        binary,
        "--bind", host,
        "--port", str(port),
        # A scratch server: never write snapshots or an append-only file.
        "--save", "",
        "--appendonly", "no",
        "--dir", directory,
        # Stay our child so that we see it exit and can stop it.
        "--daemonize", "no",
        "--loglevel", "warning",
    ]
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *server_args]


class ServerOutput(ProcessProtocol):
    """Relays the server's output, one line at a time, and reports its exit."""

    def __init__(
        self,
        on_line: Callable[[int, str], None],
        on_ended: Callable[[Failure], None],
    ) -> None:
        """
        @param on_line: called with the child's descriptor (1 or 2) and each
            non-blank line it printed.
        @param on_ended: called with the C{processEnded} reason once the
            child is gone (after its last lines).
        """
        self._on_line = on_line
        self._on_ended = on_ended
        # Output arrives in arbitrary chunks; keep the unfinished last line of
        # each stream until its newline comes.
        self._partial: dict[int, bytes] = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Split output into lines and pass each one on."""
        buffered = self._partial.get(childFD, b"") + data
        *lines, self._partial[childFD] = buffered.split(b"\n")
        for line in lines:
            self._emit(childFD, line)

    def _emit(self, child_fd: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text.strip():
            self._on_line(child_fd, text)

    def processEnded(self, reason: Failure) -> None:
        """Pass on what is left of the output, then the end."""
        for fd, rest in self._partial.items():
            if rest:
                self._emit(fd, rest)
        self._partial = {1: b"", 2: b""}
        self._on_ended(reason)


def describe_exit(reason: Failure) -> str:
    """Turn a processEnded reason into "exit status N" or "killed by SIGX"."""
    value = reason.value
    sig = getattr(value, "signal", None)
    if sig:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    code = getattr(value, "exitCode", None)
    return f"exit status {code if code is not None else 'unknown'}"
