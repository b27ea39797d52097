"""
systemd's notification protocol (C{sd_notify}), without a C library.

Under C{Type=notify} systemd passes the path of a datagram socket in
C{NOTIFY_SOCKET}; the service sends newline-separated C{KEY=VALUE} lines to
it: C{READY=1} once it works, C{STATUS=...} for C{systemctl status},
C{RELOADING=1} around a reload, C{STOPPING=1} on the way out, and
C{WATCHDOG=1} at least once per C{WatchdogSec} when the unit has a watchdog.
The protocol is one C{sendto} per message, which is all this module does.

Not under systemd (no C{NOTIFY_SOCKET}), every call is a no-op.

Child processes must not inherit C{NOTIFY_SOCKET}: the embedded
valkey-server speaks this protocol too and would announce itself as the
service (systemd rejects it under C{NotifyAccess=main}, with a warning in the
journal each time).  L{child_environment} gives the environment to pass to
C{spawnProcess}; the variables stay in C{os.environ} so that this process can
still read them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dirobserver.util.periodic import Periodic

#: The variables of the protocol; children must see none of them.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    A copy of C{environ} (default C{os.environ}) without L{NOTIFY_VARIABLES}.

    Pass it as C{env=} when spawning a child, so that only this process talks
    to systemd.
    """
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in NOTIFY_VARIABLES}


def _socket_address(value: str) -> str | bytes:
    """A C{NOTIFY_SOCKET} value as a C{sendto} address (C{@} = abstract)."""
    if value.startswith("@"):
        # Linux abstract namespace: a leading NUL byte instead of the "@".
        return b"\0" + value[1:].encode("utf-8", "surrogateescape")
    return value


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """
    Seconds between two C{WATCHDOG=1}, or None when the watchdog is off.

    Half of C{WATCHDOG_USEC}, as sd_watchdog_enabled(3) advises, so that one
    late turn of the loop does not get the service killed.  A C{WATCHDOG_PID}
    naming another process means the watchdog is not ours.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    try:
        usec_value = int(usec)
        if watchdog_pid and int(watchdog_pid) != pid:
            return None
    except ValueError:
        return None
    if usec_value <= 0:
        return None
    return usec_value / 2 / 1_000_000


class Notifier:
    """
    Sends notifications to systemd's C{NOTIFY_SOCKET}, if there is one.

    A failed send is logged once (again only after a send worked in
    between) and never raises: a daemon must not stop because systemd's
    socket went away.

    @ivar address: where the datagrams go, or None when not under systemd.
    @ivar failures: how many sends failed.
    """

    _log = Logger()

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        environ = os.environ if environ is None else environ
        # A snapshot: the caller may drop these from os.environ afterwards.
        self._environ = {k: environ[k] for k in NOTIFY_VARIABLES if k in environ}
        value = self._environ.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = _socket_address(value) if value else None
        self._pid = pid
        self.failures = 0
        self._socket: socket.socket | None = None
        self._failing = False

    @property
    def watchdog_interval(self) -> float | None:
        """
        Seconds between two C{WATCHDOG=1}, or None without a watchdog for us.

        Read when asked, with the pid of the moment: twistd builds the
        services before it forks into a daemon.
        """
        if self.address is None:
            return None
        return _watchdog_interval(self._environ, os.getpid() if self._pid is None else self._pid)

    @property
    def enabled(self) -> bool:
        """Whether there is a systemd to talk to."""
        return self.address is not None

    def send(self, **fields: Any) -> bool:
        """
        Send one datagram of C{KEY=VALUE} lines (keyword arguments).

        @return: whether it was sent (False when disabled or on error).
        """
        if self.address is None:
            return False
        # A value must stay on its line: a newline would start a new key.
        payload = "\n".join(f"{key}={' '.join(str(value).split())}" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never wait on systemd: a full socket buffer drops the message.
                self._socket.setblocking(False)
            self._socket.sendto(payload.encode("utf-8", "surrogateescape"), self.address)
        except OSError as e:
            self.failures += 1
            if not self._failing:
                self._failing = True
                self._log.warn("Cannot notify systemd at {address!r}: {error}", address=self.address, error=e)
            return False
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """C{READY=1}, with a C{STATUS} line when given: the service works."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """C{STATUS=text}: one line shown by C{systemctl status}."""
        return self.send(STATUS=text)

    def reloading(self) -> bool:
        """
        C{RELOADING=1} with the C{CLOCK_MONOTONIC} time in microseconds.

        Send L{ready} when the reload is over.
        """
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        """C{STOPPING=1}: the service is shutting down."""
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        """C{WATCHDOG=1}: keep-alive for systemd's watchdog."""
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class SystemdService(Service):
    """
    Feeds systemd's watchdog while the daemon is healthy, says C{STOPPING=1}
    when it stops.

    C{WATCHDOG=1} goes out every L{Notifier.watchdog_interval} seconds, but
    only when C{alive()} is true: a daemon whose event loop turns but whose
    inotify no longer answers stops feeding the watchdog, and systemd
    restarts it.  READY, STATUS and RELOADING are the caller's to send, on
    its own state changes.

    @ivar notifier: the L{Notifier} used.
    @ivar beats: how many C{WATCHDOG=1} were sent.
    @ivar skipped: how many were withheld because C{alive()} was false.
    """

    _log = Logger()

    def __init__(self, notifier: Notifier, alive: Callable[[], bool], clock: IReactorTime) -> None:
        """
        @param alive: asked before each keep-alive; false withholds it.
        @param clock: runs the keep-alive loop (the reactor; a
            L{Clock<twisted.internet.task.Clock>} in tests).
        """
        self.notifier = notifier
        self._alive = alive
        self._clock = clock
        self.beats = 0
        self.skipped = 0
        self._withholding = False
        self._periodic: Periodic | None = None

    def _beat(self) -> None:
        if self._alive():
            if self._withholding:
                self._withholding = False
                self._log.info("Alive again: feeding systemd's watchdog")
            if self.notifier.watchdog():
                self.beats += 1
            return
        self.skipped += 1
        # One line per episode, not one per interval.
        if not self._withholding:
            self._withholding = True
            self._log.warn("Not alive: withholding systemd's watchdog keep-alive")

    def startService(self) -> None:
        super().startService()
        interval = self.notifier.watchdog_interval
        if interval is not None:
            self._periodic = Periodic(self._beat, interval, "systemd watchdog", self._clock)
            self._periodic.start()

    def stopService(self) -> None:
        super().stopService()
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None
        self.notifier.stopping()
        self.notifier.close()
