"""
The watchdog (L{InotifyLivenessProbe}): is the inotify mechanism still alive?

The program this one replaces had a predecessor that went deaf after a week:
no error, just no more events.  Counting events cannot tell a deaf observer
from a quiet directory, and a quiet directory must not make a healthy daemon
exit.  So the watchdog measures liveness, not traffic: it owns a private probe
directory (created with C{mkdtemp}, never inside a monitored directory),
watched by the same inotify instance as the monitored directories, and every
C{interval} seconds it creates a file there and expects the event back.

 - A probe not answered by the next tick: the watcher is recreated (a fresh
   inotify instance, every directory watched and listed again).  Once per
   silence.
 - No probe answered for C{timeout} seconds (C{monitor_inactivitytimeout}):
   C{on_dead} is called; the service then stops with a non-zero exit status,
   so that a supervisor (systemd, ...) restarts the process.

The same probe watches the fanotify group
(L{dirobserver.sources.fanotify_choice}), with its directory on a marked
filesystem: its C{mechanism} names it in the log lines, and its remedy is a
listing of every directory (a group cannot be made again once privileges
are dropped).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dirobserver.sources.interface import Batch, EventSource, WatchError
from dirobserver.sources.masks import WATCH_MASK
from dirobserver.util.periodic import Periodic


class InotifyLivenessProbe:
    """
    Probes the inotify watcher (the watchdog of the module docstring).

    @ivar probes: probes sent.  @ivar answers: probes that came back.
    @ivar resets: times the watcher was recreated, counting the C{resets}
        it was built with.
    """

    _log = Logger()

    def __init__(
        self,
        timeout: float,
        clock: IReactorTime,
        on_deaf: Callable[[], None],
        on_dead: Callable[[], None],
        resets: int = 0,
        mechanism: str = "inotify",
        remedy: str = "recreating the watcher and listing every directory",
    ) -> None:
        """
        @param on_deaf: recreate the watcher (first remedy).
        @param on_dead: give up (no probe answered for C{timeout} seconds).
        @param resets: resets done before this probe (by the probe it
            replaces, after a reload changed the timeout): the count is
            over the whole run.
        @param mechanism: what is probed, for the log lines.
        @param remedy: what C{on_deaf} does, for the log line.
        """
        self.mechanism = mechanism
        self._remedy = remedy
        self.timeout = timeout
        # Several probes fit in the timeout, with one reset attempt between.
        self.interval = min(max(timeout / 5.0, 0.2), 10.0)
        self._clock = clock
        self._on_deaf = on_deaf
        self._on_dead = on_dead
        self._watcher: EventSource | None = None
        self._wd: int | None = None
        self._dir: str | None = None
        self._expected: bytes | None = None
        self._last_answer = 0.0
        self._reset_done = False
        self._seq = 0
        self._periodic = Periodic(self._tick, self.interval, "The watchdog", clock)
        self.probes = 0
        self.answers = 0
        self.resets = resets

    @property
    def directory(self) -> str | None:
        """The private probe directory, while running."""
        return self._dir

    def start(self, watcher: EventSource) -> None:
        """Create the probe directory and start probing C{watcher}."""
        try:
            self._dir = tempfile.mkdtemp(prefix="dirobserver-probe-")
        except OSError as e:
            self._log.error(
                "The watchdog cannot create its probe directory in {tmp} ({error}): "
                "watchdog disabled (set TMPDIR to a writable directory)",
                tmp=tempfile.gettempdir(),
                error=e,
            )
            return
        self._last_answer = self._clock.seconds()
        self.attach(watcher)
        self._periodic.start(now=True)

    def healthy(self) -> bool:
        """
        Whether inotify answers: the last probe came back in time (two and a
        half intervals leave room for one probe in flight).  A watchdog
        without a probe directory cannot tell, and says yes.
        """
        if self._dir is None:
            return True
        return self._clock.seconds() - self._last_answer <= 2.5 * self.interval

    def stop(self) -> None:
        """Stop probing and remove the probe directory."""
        self._periodic.stop()
        if self._watcher is not None and self._wd is not None:
            self._watcher.remove(self._wd, self)
        self._wd = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def attach(self, watcher: EventSource) -> None:
        """Probe C{watcher} (a new one, after a reset)."""
        self._watcher = watcher
        self._wd = None
        self._watch()

    def _watch(self) -> None:
        if self._dir is None or self._watcher is None:
            return
        try:
            os.makedirs(self._dir, exist_ok=True)
            self._wd = self._watcher.add(os.fsencode(self._dir), self, WATCH_MASK)
        except (OSError, WatchError) as e:
            self._log.error("The watchdog cannot watch its probe directory: {error}", error=e)

    # -- the Sink interface ----------------------------------------------------

    def file_events(self, batch: Batch, read_time: float) -> None:
        """A probe came back (or something else appeared there)."""
        if any(name == self._expected for name, _mask in batch):
            self.answers += 1
            self._expected = None
            self._last_answer = self._clock.seconds()
            if self._reset_done:
                self._log.info("{mechanism} answers the watchdog again", mechanism=self.mechanism)
            self._reset_done = False

    def events_lost(self) -> None:
        """
        The kernel queue overflowed: inotify is alive (it said so), but the
        probe's event may be among the lost ones: that is no silence.
        """
        if self._expected is not None:
            self._expected = None
            self._last_answer = self._clock.seconds()

    def watch_ended(self, mask: int) -> None:
        """Someone removed the probe directory: make it again."""
        self._wd = None
        self._log.warn("The watchdog probe directory {dir} went away; recreating it", dir=self._dir)
        self._watch()

    # -- probing ---------------------------------------------------------------

    def _tick(self) -> None:
        if self._expected is not None and self._watcher is not None:
            if self._watcher.backlog():
                # Events were read and wait to be handed over: the kernel
                # answers, and the probe's event is behind a burst (as
                # after an overflow, that is no silence).
                self._expected = None
                self._last_answer = self._clock.seconds()
            else:
                # Timers run before the reactor reads its descriptors: after
                # the process was suspended (SIGSTOP, a paused VM, heavy
                # swapping) the answer may be waiting in the kernel queue.
                # Read it before judging, or a healthy observer would be
                # reset or stopped.
                self._watcher.drain()
        now = self._clock.seconds()
        if self._expected is not None:
            silent = now - self._last_answer
            if silent >= self.timeout:
                self._log.critical(
                    "{mechanism} has not answered the watchdog for {silent:.0f} s "
                    "(monitor_inactivitytimeout {timeout} s): giving up so that "
                    "a supervisor restarts the observer",
                    mechanism=self.mechanism,
                    silent=silent,
                    timeout=self.timeout,
                )
                self._periodic.stop()
                self._on_dead()
                return
            if not self._reset_done:
                self._reset_done = True
                self.resets += 1
                self._log.warn(
                    "{mechanism} did not answer the watchdog probe within {interval} s: {remedy}",
                    mechanism=self.mechanism, remedy=self._remedy,
                    interval=self.interval,
                )
                self._on_deaf()
        self._probe()

    def _probe(self) -> None:
        if self._dir is None:
            return
        previous = self._expected
        self._seq += 1
        name = b"probe-%d" % self._seq
        path = os.path.join(os.fsencode(self._dir), name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        except OSError as e:
            self._log.error("The watchdog cannot create its probe file: {error}", error=e)
            self._watch()
            return
        self.probes += 1
        self._expected = name
        for old in (previous, b"probe-%d" % (self._seq - 1)):
            if old:
                try:
                    os.unlink(os.path.join(os.fsencode(self._dir), old))
                except OSError:
                    pass
