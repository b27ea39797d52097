"""
The observer's core: the watcher, one L{DirectoryMonitor} per active
section, and the work that involves every directory.

L{ObserverService} is the third child of the service tree
(L{dirobserver.app.observer.DirObserver}): by the time it starts, the
writer is running.  It owns:

 - the inotify L{InotifySource} and the watches of every monitor;
 - the listings (run by its own cooperator, a few at a time, each waiting
   for Redis);
 - the periodic work: retrying missing directories, the forced polls, the
   catch-up of listings cut short by C{poll_queue_limit}, the watchdog;
 - the recovery actions that involve every directory: a kernel queue
   overflow, a watchdog reset, a Redis reconnect;
 - the parts whose state answers "alive?" and "ready?" (/livez, /readyz,
   systemd: L{dirobserver.app.health}).

On stop it reads what the kernel queued and drops the watches first, so
nothing new comes in; the writer, stopped next, delivers what it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from dirobserver.announce.listing_line import ListingLine
from dirobserver.announce.monitor import WATCHED, DirectoryMonitor
from dirobserver.app import exits
from dirobserver.app.health import HealthAnswers
from dirobserver.config.settings import SectionSettings, Settings
from dirobserver.redis.writer import RedisWriter
from dirobserver.sources.fanotify_choice import FanotifyGroup
from dirobserver.sources.inotify import InotifySource
from dirobserver.sources.liveness import InotifyLivenessProbe
from dirobserver.util import gc_pause
from dirobserver.util.periodic import Periodic
from dirobserver.util.reactor import IDaemonReactor
from dirobserver.util.stats import LISTING_BUCKETS, Histogram
from dirobserver.util.words import plural

#: Directories listed at the same time (the others wait their turn).
LISTINGS_AT_ONCE = 4

#: Seconds after the start, without Redis, when "waiting for Redis" is said.
WAITING_SAID_AFTER = 1.0

#: Seconds between two attempts to watch a missing directory.
RETRY_INTERVAL = 1.0
#: Directories whose first watch is said one line each at start; past
#: that, one line says how many more (10,000 lines cost a second).
SAID_ONE_BY_ONE = 100

#: Seconds between two looks at queues whose last listing was cut short by
#: poll_queue_limit (the rest is listed once the queue has room again).
CATCH_UP_INTERVAL = 5.0

#: The cooperator's pause between two steps of cooperative work (a listing).
_STEP_DELAY = 0.00001
#: Seconds of cooperative work in one step at most (Twisted's own figure).
_TIME_SLICE = 0.01


class ObserverService(HealthAnswers, service.Service):
    """
    The core: the watcher, one L{DirectoryMonitor} per active section, and
    the periodic and recovery work that involves them.

    @ivar monitors: one L{DirectoryMonitor} per active section.
    @ivar watcher: the current L{InotifySource} (replaced by a watchdog reset).
    @ivar overflows: kernel queue overflows, over every watcher so far.
    @ivar listing_seconds: how long each listing took.
    @ivar exit_status: non-zero once the observer gave up.
    """

    _log = Logger()
    name = "observer"

    def __init__(
        self,
        settings: Settings,
        writer: RedisWriter,
        reactor: IDaemonReactor,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """
        @param reactor: the daemon's (its timers, and the watcher reads in
            it).
        @param on_ready: called once, when the observer is first ready.
        """
        self.settings = settings
        self._on_ready = on_ready
        self._reactor = reactor
        self.writer = writer
        # The service's own cooperator runs the listings: stopping it on
        # stop ends every listing at once, and tests can drive it.
        # Its steps end when the linger's tick is due: a listing must not
        # hold back the events read at the tick (see dirobserver.util.linger).
        slices = {} if writer.linger is None else {
            "terminationPredicateFactory": writer.linger.time_slices(_TIME_SLICE)}
        self._cooperator = task.Cooperator(
            scheduler=lambda step: reactor.callLater(_STEP_DELAY, step), started=False, **slices
        )
        self.listing_seconds = Histogram(LISTING_BUCKETS)
        self._turns = ListingLine(LISTINGS_AT_ONCE, writer.when_connected)
        self.monitors: list[DirectoryMonitor] = []
        self._polls: dict[DirectoryMonitor, Periodic] = {}
        for i, section in enumerate(settings.sections):
            self._new_monitor(section, say_watching=i < SAID_ONE_BY_ONE)
        self.watcher: InotifySource | None = None
        #: the fanotify group of the sections that use it (see fanotify_choice)
        self.fanotify = FanotifyGroup(reactor, self._overflowed)
        self.watchdog: InotifyLivenessProbe | None = None
        if settings.inactivity_timeout > 0:
            self.watchdog = InotifyLivenessProbe(
                settings.inactivity_timeout, reactor, self.reset_watcher, self._give_up
            )
        self._retry = Periodic(
            self._retry_missing, RETRY_INTERVAL, "Retrying missing directories", reactor
        )
        self._catch_up = Periodic(
            self._catch_up_listings, CATCH_UP_INTERVAL, "Catching up cut listings", reactor
        )
        self.overflows = 0
        self.exit_status = 0
        self._waiting_call: IDelayedCall | None = None

    def _new_monitor(self, section: SectionSettings, say_watching: bool = True) -> DirectoryMonitor:
        monitor = DirectoryMonitor(
            section, self.writer, self._reactor, self._cooperator, self._turns, self.listing_seconds,
            say_watching=say_watching,
        )
        self.monitors.append(monitor)
        if section.forced_poll > 0:
            self._polls[monitor] = Periodic(
                monitor.relist, section.forced_poll, f"[{section.name}] Forced poll", self._reactor
            )
        return monitor

    def add_section(self, section: SectionSettings) -> DirectoryMonitor:
        """Monitor one more section (a reload): watched and listed at once."""
        monitor = self._new_monitor(section)
        if self.running and self.watcher is not None:
            monitor.use_fanotify(self.fanotify.source_for(section))
            monitor.attach(self.watcher)
            if monitor in self._polls:
                self._polls[monitor].start()
        return monitor

    def remove_section(self, name: str) -> None:
        """
        Stop monitoring section C{name} (a reload).  What the writer holds
        for it is still delivered.
        """
        for monitor in [m for m in self.monitors if m.section.name == name]:
            monitor.detach()
            poll = self._polls.pop(monitor, None)
            if poll is not None:
                poll.stop()
            self.monitors.remove(monitor)

    def set_inactivity_timeout(self, timeout: float) -> None:
        """Replace the watchdog by one with C{timeout} (0: none)."""
        resets = self.watchdog_resets
        if self.watchdog is not None:
            self.watchdog.stop()
        self.watchdog = None
        if timeout > 0:
            # The count of resets is over the whole run: the new probe goes on from it.
            self.watchdog = InotifyLivenessProbe(
                timeout, self._reactor, self.reset_watcher, self._give_up, resets=resets
            )
            if self.running and self.watcher is not None:
                self.watchdog.start(self.watcher)
        if self.running:
            self.fanotify.start_probe(timeout, self.relist_all, self._give_up)

    @property
    def watchdog_resets(self) -> int:
        """How many times the watchdog recreated the watcher."""
        return self.watchdog.resets if self.watchdog is not None else 0

    # -- start -----------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        The fanotify group and its filesystem marks need CAP_SYS_ADMIN:
        twistd calls this before it drops privileges (C{--uid}).
        """
        super().privilegedStartService()
        mask = 0
        for monitor in self.monitors:
            mask |= monitor.mask
        self.fanotify.open([m.section for m in self.monitors], mask,
                           probed=self.settings.inactivity_timeout > 0)

    def startService(self) -> None:
        super().startService()
        self._cooperator.start()
        try:
            self.watcher = self._new_watcher()
        except Exception as e:
            # inotify_init fails when fs.inotify.max_user_instances is used up
            # by other programs of this user: nothing can be watched.
            self._log.critical(
                "Cannot create an inotify instance ({error}): the per-user limit "
                "fs.inotify.max_user_instances may be reached; stopping",
                error=e,
            )
            self._stop_process(exits.EXIT_NO_INOTIFY)
            return
        with gc_pause.bulk(len(self.monitors)):
            for monitor in self.monitors:
                monitor.use_fanotify(self.fanotify.source_for(monitor.section))
                monitor.attach(self.watcher)
        if len(self.monitors) > SAID_ONE_BY_ONE:
            self._log.info(
                "... and {more}, each said at debug level (--log-level=debug)",
                more=plural(len(self.monitors) - SAID_ONE_BY_ONE, "more directory", "more directories"),
            )
        self._retry.start()
        self._catch_up.start()
        for poll in self._polls.values():
            poll.start()
        if self.watchdog is not None:
            self.watchdog.start(self.watcher)
        self.fanotify.start_probe(self.settings.inactivity_timeout, self.relist_all, self._give_up)
        # Redis usually answers within milliseconds, and then the ready line
        # says it all: "waiting" is said only when it is true for a while.
        self._waiting_call = self._reactor.callLater(WAITING_SAID_AFTER, self._say_waiting)
        self.writer.when_connected().addCallback(self._ready)

    def _say_waiting(self) -> None:
        self._waiting_call = None
        self._log.info(
            "Watching {watching}; waiting for Redis at {redis}",
            watching=self.watching(),
            redis=self.settings.redis.describe(),
        )

    def _cancel_waiting(self) -> None:
        if self._waiting_call is not None and self._waiting_call.active():
            self._waiting_call.cancel()
        self._waiting_call = None

    def _ready(self, _: Any) -> None:
        self._cancel_waiting()
        if not self.running:
            return
        self._log.info(
            "dirobserver ready: watching {watching}, Redis at {redis} connected",
            watching=self.watching(),
            redis=self.writer.describe(),
        )
        if self._on_ready is not None:
            self._on_ready()

    def _new_watcher(self) -> InotifySource:
        # The writer's linger: the events read at a tick and the reply of
        # the round before are taken in one wake-up.
        watcher = InotifySource(self._reactor, on_overflow=self._overflowed, linger=self.writer.linger)
        watcher.startReading()
        return watcher

    # -- recovery --------------------------------------------------------------

    def _overflowed(self) -> None:
        """The kernel queue overflowed: events were lost, list everything."""
        self.overflows += 1
        self.relist_all()

    def relist_all(self) -> None:
        """List every watched directory (after events were lost)."""
        for monitor in self.monitors:
            if monitor.state == WATCHED:
                monitor.relist()

    def reset_watcher(self) -> None:
        """Replace the inotify instance: watch and list every directory again."""
        old, self.watcher = self.watcher, self._new_watcher()
        if old is not None:
            old.close()
        for monitor in self.monitors:
            monitor.attach(self.watcher)
        if self.watchdog is not None:
            self.watchdog.attach(self.watcher)

    def reconnected(self) -> None:
        """
        Redis is back after losing its connection.  What we held is resent by
        the writer; a listing of every directory also covers what Redis
        itself may have lost (a restart without persistence) for the files
        still present.  Cheap insurance, bounded by poll_queue_limit.
        """
        if not self.running:
            return
        self._log.info("Redis reconnected: listing every directory as insurance")
        self.relist_all()

    def _catch_up_listings(self) -> None:
        for monitor in self.monitors:
            if monitor.incomplete and monitor.state == WATCHED:
                monitor.relist(resume=True)

    def _retry_missing(self) -> None:
        for monitor in self.monitors:
            if monitor.state != WATCHED:
                monitor.try_watch()
            else:
                monitor.check_target()

    def _give_up(self) -> None:
        """The watchdog gave up: stop, and exit non-zero."""
        self._stop_process(exits.EXIT_WATCHDOG)

    def _stop_process(self, status: int) -> None:
        """Stop the whole daemon; the process then exits with C{status}."""
        self.exit_status = status
        exits.stop_process(self._reactor, status)

    # -- stop ------------------------------------------------------------------

    def stopService(self) -> None:
        super().stopService()
        self._cancel_waiting()
        self._log.info("dirobserver stopping: no new events; delivering what is held")
        self._retry.stop()
        self._catch_up.stop()
        for poll in self._polls.values():
            poll.stop()
        if self.watchdog is not None:
            self.watchdog.stop()
        for source in (self.watcher, self.fanotify.source):
            if source is not None:
                source.drain()
        for monitor in self.monitors:
            monitor.detach()
        if self.watcher is not None:
            self.watcher.close()
        self.fanotify.close()
        # Every listing ends here; the writer (stopped next) delivers what
        # they pushed.
        self._cooperator.stop()
