"""
The observer service: puts the pieces together and runs them in order.

Data flows one way: L{Watcher} (inotify) -> L{DirectoryMonitor} (filter,
event) -> L{RedisWriter} (batches) -> Redis.  This module owns the order of
start and stop, the periodic work (retrying missing directories, the forced
poll, the watchdog) and the recovery actions that involve every directory
(kernel queue overflow, watchdog reset).

Start: embedded Redis (when asked) -> writer (connects, retries forever) ->
watcher and watches -> listings (they wait for Redis) -> periodic work.  The
"ready" line is logged once every directory has been tried and Redis answers.

Stop (SIGTERM, SIGINT): periodic work and watches first, so nothing new
comes in; then the writer delivers what it holds (bounded by C{timeout});
then the embedded Redis, if any.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from .config import Settings
from .monitor import WATCHED, DirectoryMonitor
from .periodic import Periodic
from .watchdog import Watchdog
from .watcher import Watcher
from .writer import RedisWriter

#: Exit status when the watchdog gives up (EX_SOFTWARE from sysexits.h).
EXIT_WATCHDOG = 70

#: Exit status when no inotify instance can be created (EX_OSERR).
EXIT_NO_INOTIFY = 71

#: Directories listed at the same time (the others wait their turn).
LISTINGS_AT_ONCE = 4

#: Seconds between two attempts to watch a missing directory.
RETRY_INTERVAL = 1.0

#: Seconds between two looks at queues whose last listing was cut short by
#: poll_queue_limit (the rest is listed once the queue has room again).
CATCH_UP_INTERVAL = 5.0


class ObserverService(service.Service):
    """
    The whole observer as one Twisted service.

    @ivar monitors: one L{DirectoryMonitor} per active section.
    @ivar watcher: the current L{Watcher} (replaced by a watchdog reset).
    @ivar exit_status: non-zero once the watchdog gave up.
    """

    _log = Logger()
    name = "dirobserver"

    def __init__(self, settings: Settings, reactor: Any = None, embedded: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self._reactor = reactor
        self.embedded = embedded
        self.writer = RedisWriter(
            settings.redis, settings.max_held_events, reactor, on_reconnect=self._reconnected
        )
        slots = defer.DeferredSemaphore(LISTINGS_AT_ONCE)
        self.monitors = [
            DirectoryMonitor(s, self.writer, reactor, slots=slots) for s in settings.sections
        ]
        self.watcher: Watcher | None = None
        self.watchdog: Watchdog | None = None
        if settings.inactivity_timeout > 0:
            self.watchdog = Watchdog(
                settings.inactivity_timeout, reactor, self.reset_watcher, self._give_up
            )
        self._retry = Periodic(
            self._retry_missing, RETRY_INTERVAL, "Retrying missing directories", reactor
        )
        self._catch_up = Periodic(
            self._catch_up_listings, CATCH_UP_INTERVAL, "Catching up cut listings", reactor
        )
        self._polls = [
            Periodic(m.relist, m.section.forced_poll, f"[{m.section.name}] Forced poll", reactor)
            for m in self.monitors
            if m.section.forced_poll > 0
        ]
        self.exit_status = 0

    # -- start -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for warning in self.settings.warnings:
            self._log.warn("{warning}", warning=warning)
        self._log.info(
            "dirobserver starting: {n} directories, Redis at {redis}, configuration {path}",
            n=len(self.monitors),
            redis=self.settings.redis.describe(),
            path=self.settings.path,
        )
        if self.embedded is not None:
            self.embedded.startService()
            self.embedded.whenReady().addBoth(
                lambda _: self.writer.startService() if self.running else None
            )
        else:
            self.writer.startService()
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
            self.exit_status = EXIT_NO_INOTIFY
            _exit_with_status_after_shutdown(self._reactor, EXIT_NO_INOTIFY)
            self._reactor.callWhenRunning(self._reactor.stop)
            return
        for monitor in self.monitors:
            monitor.attach(self.watcher)
        self._retry.start()
        self._catch_up.start()
        for poll in self._polls:
            poll.start()
        if self.watchdog is not None:
            self.watchdog.start(self.watcher)
        watched = sum(m.state == WATCHED for m in self.monitors)
        self._log.info(
            "Watching {watched} of {n} directories; waiting for Redis at {redis}",
            watched=watched,
            n=len(self.monitors),
            redis=self.settings.redis.describe(),
        )
        self.writer.when_connected().addCallback(self._ready)

    def _ready(self, _: Any) -> None:
        if not self.running:
            return
        watched = sum(m.state == WATCHED for m in self.monitors)
        self._log.info(
            "dirobserver ready: watching {watched} of {n} directories, Redis at {redis} connected",
            watched=watched,
            n=len(self.monitors),
            redis=self.settings.redis.describe(),
        )

    def _new_watcher(self) -> Watcher:
        watcher = Watcher(self._reactor, on_overflow=self.relist_all)
        watcher.startReading()
        return watcher

    # -- recovery --------------------------------------------------------------

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

    def _reconnected(self) -> None:
        """
        Redis is back after losing its connection.  What we held is resent by
        the writer; a listing of every directory also covers what Redis
        itself may have lost (a restart without persistence) for the files
        still present.  Cheap insurance, bounded by poll_queue_limit.
        """
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
        self.exit_status = EXIT_WATCHDOG
        _exit_with_status_after_shutdown(self._reactor, EXIT_WATCHDOG)
        self._reactor.stop()

    # -- stop ------------------------------------------------------------------

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self._log.info("dirobserver stopping: no new events; delivering what is held")
        self._retry.stop()
        self._catch_up.stop()
        for poll in self._polls:
            poll.stop()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.watcher is not None:
            self.watcher.drain()
        for monitor in self.monitors:
            monitor.detach()
        if self.watcher is not None:
            self.watcher.close()
        d = defer.maybeDeferred(self.writer.stopService)
        if self.embedded is not None:
            d.addBoth(lambda _: self.embedded.stopService())
        return d.addBoth(self._stopped)

    def _stopped(self, _: Any) -> None:
        # twistd re-raises the signal that stopped the reactor once it is done
        # (so the process "dies by SIGTERM").  A stop on SIGTERM or SIGINT is
        # the normal, clean way for this daemon to end: everything held has
        # been delivered or reported, so the exit status is 0.
        if getattr(self._reactor, "_exitSignal", None) is not None:
            self._reactor._exitSignal = None
        watcher = self.watcher
        self._log.info(
            "dirobserver stopped: {delivered} events delivered, {held} not delivered; "
            "{overflows} queue overflows, {reconnects} Redis reconnects, "
            "{dropped} events left to listings",
            delivered=self.writer.delivered,
            held=self.writer.held(),
            overflows=watcher.overflows if watcher is not None else 0,
            reconnects=self.writer.reconnects,
            dropped=self.writer.dropped,
        )


def _exit_with_status_after_shutdown(reactor: Any, status: int) -> None:
    """
    Make the process exit with C{status} once twistd is done.

    twistd exits 0 after the reactor stops, whatever the reason.  An
    C{atexit} hook runs after twistd has stopped the services, written its
    last log lines and removed the pidfile; it then ends the process with the
    status a supervisor needs to see.
    """
    import atexit

    def _exit() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(_exit)
