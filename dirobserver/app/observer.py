"""
The service tree twistd runs, and what belongs to the whole daemon.

Data flows one way: L{InotifySource} (inotify) -> L{DirectoryMonitor} (filter,
event) -> L{RedisWriter} (batches) -> Redis.  L{DirObserver} is the tree;
its children start in this order and stop in reverse, each waiting for the
one before (L{dirobserver.app.ordered_services.OrderedMultiService}):

 1. the metrics endpoint (C{--metrics} only): first, because a port it
    cannot listen on stops the start before anything is watched (below),
    and so that the health endpoints answer for as long as the daemon runs;
 2. the embedded Redis (C{--embedded-redis} only): started, and waited for
    until it accepts connections (bounded; the writer retries anyway);
 3. the L{RedisWriter}: connects, and retries for as long as it runs; on
    stop it delivers what it holds (bounded by C{timeout});
 4. the L{ObserverService} core (L{dirobserver.app.core}): the watcher and
    the watches, the listings, the periodic and recovery work.  On stop it
    reads what the kernel queued and drops the watches first, so nothing
    new comes in;
 5. the reloader (SIGHUP) and systemd's notifier (last: it stops first, so
    STOPPING=1 goes out as the stop begins).

A part that refuses to start (L{exits.StartRefused}: the C{--metrics} port
is in use, something that is not Redis holds the embedded server's port)
is one line; the parts after it do not start, and the daemon stops with
the status the part gave.

The tree owns what involves the whole daemon: the start and stop lines,
applying a reloaded configuration, the state line systemd shows, and how
a SIGTERM or SIGINT ends the process (L{dirobserver.app.exits}).  The
"ready" line is logged once every directory has been tried and Redis
answers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver import __version__
from dirobserver.app import exits
from dirobserver.app.core import ObserverService
from dirobserver.app.ordered_services import OrderedMultiService
from dirobserver.app.reload import ReloadService
from dirobserver.config import settings as config
from dirobserver.config.settings import Settings
from dirobserver.ops.systemd import Notifier, SystemdService
from dirobserver.redis.writer import RedisWriter
from dirobserver.util import gc_pause
from dirobserver.util.periodic import Periodic
from dirobserver.util.reactor import IDaemonReactor
from dirobserver.util.words import plural

#: Seconds between two looks at the state line systemd shows (STATUS=).
STATUS_INTERVAL = 1.0


class DirObserver(OrderedMultiService):
    """
    The whole daemon as one service tree (see the module docstring).

    @ivar writer: the L{RedisWriter}.
    @ivar core: the L{ObserverService}.
    """

    _log = Logger()
    name = "dirobserver"

    def __init__(
        self,
        settings: Settings,
        reactor: IDaemonReactor,
        embedded: bool = False,
        metrics: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """
        @param reactor: the one reactor every part uses (resolved once, by
            L{dirobserver.app.tap.makeService}, or a test's).
        @param embedded: run a private valkey-server first.
        @param metrics: serve /metrics, /livez and /readyz on this server
            endpoint description.
        @param notifier: systemd's (a no-op outside systemd); one reading
            the environment by default.
        """
        super().__init__()
        self.settings = settings
        self._reactor = reactor
        self.notifier = notifier if notifier is not None else Notifier()
        self.writer = RedisWriter(
            settings.redis, settings.max_held_events, reactor,
            on_reconnect=lambda: self.core.reconnected(),
        )
        self.core = ObserverService(settings, self.writer, reactor, on_ready=self._ready)
        if metrics:
            from dirobserver.ops.http import MetricsService

            MetricsService(metrics, self.core, reactor, exits.EXIT_CANNOT_LISTEN).setServiceParent(self)
        if embedded:
            from dirobserver.app.embedded_leftovers import queues_of, say_queued
            from dirobserver.app.embedded_redis import EmbeddedRedis

            # Options refuse a Unix socket or Sentinels with --embedded-redis,
            # and give host and port their defaults: a TCP address is there.
            host, port = settings.redis.tcp_address()
            # It keeps nothing on disk: what its queues hold at stop is said,
            # once the writer (stopped before it) delivered what it held.
            EmbeddedRedis(
                host, port, reactor,
                before_stop=lambda: say_queued(reactor, host, port, queues_of(self.settings.sections)),
            ).setServiceParent(self)
        self.writer.setServiceParent(self)
        self.core.setServiceParent(self)
        self.reloader = ReloadService(
            self, lambda: config.load(settings.path, redis_optional=embedded), reactor,
            notify=self.notifier,
        )
        self.reloader.setServiceParent(self)
        # Last: it stops first, so STOPPING=1 goes out as the stop begins.
        SystemdService(self.notifier, self.core.alive, reactor).setServiceParent(self)
        self._status = Periodic(self._report_status, STATUS_INTERVAL, "systemd status", reactor)
        self._said: str | None = None
        self._stop_signals = exits.CleanStopSignals(reactor)

    def _ready(self) -> None:
        self._said = self.core.status_text()
        self.notifier.ready(status=self._said)
        if self.notifier.enabled and not self._status.running:
            self._status.start()

    def _report_status(self) -> None:
        """Tell systemd when the state line changes (Redis lost, a directory missing)."""
        text = self.core.status_text()
        if text != self._said:
            self._said = text
            self.notifier.status(text)
    def startService(self) -> defer.Deferred:
        for warning in self.settings.warnings:
            self._log.warn("{warning}", warning=warning)
        self._log.info(
            "dirobserver {version} starting: {n}, Redis at {redis}, configuration {path}",
            version=__version__,
            n=plural(len(self.settings.sections), "directory", "directories"),
            redis=self.settings.redis.describe(),
            path=self.settings.path,
        )
        # The reactor installs its signal handlers as it starts (twistd
        # starts the tree before): ours replace them once it runs.
        self._reactor.callWhenRunning(self._stop_signals.install)
        return super().startService().addErrback(self._refused)

    def _refused(self, failure: Failure) -> None:
        """A part refused to start (already said): stop with its status."""
        failure.trap(exits.StartRefused)
        refused = failure.value
        assert isinstance(refused, exits.StartRefused)  # as trap() checked; for mypy
        exits.stop_process(self._reactor, refused.status)

    def stopService(self) -> defer.Deferred:
        self._status.stop()
        return super().stopService().addBoth(self._stopped)

    def apply_settings(self, new: Settings) -> str:
        """
        Apply a reloaded configuration (see L{dirobserver.app.reload}).

        @return: a one-line summary of what changed.
        """
        old, self.settings = self.settings, new
        before = {s.name: s for s in old.sections}
        after = {s.name: s for s in new.sections}
        added = [name for name in after if name not in before]
        removed = [name for name in before if name not in after]
        changed = [name for name in after if name in before and after[name] != before[name]]
        # In bulk: the replaced sections are freed, the new ones frozen.
        with gc_pause.bulk(max(len(before), len(after))):
            for name in removed + changed:
                self.core.remove_section(name)
            self.core.settings = new
            for name in changed + added:
                self.core.add_section(after[name])
        parts = [f"{len(after) - len(added) - len(changed)} sections unchanged"]
        for what, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                parts.append(f"{what} " + ", ".join(f"[{n}]" for n in names))
        if new.redis != old.redis or new.max_held_events != old.max_held_events:
            self.writer.reconfigure(new.redis, new.max_held_events)
            if new.redis != old.redis:
                parts.append(f"Redis now at {new.redis.describe()}")
        if new.inactivity_timeout != old.inactivity_timeout:
            self.core.set_inactivity_timeout(new.inactivity_timeout)
            parts.append(f"watchdog timeout {new.inactivity_timeout:g} s")
        return "; ".join(parts)

    def _stopped(self, result: Any) -> Any:
        # Kept until the stop is over: a second SIGTERM while what is held
        # is being delivered must not turn a clean stop into a death by
        # signal.
        self._stop_signals.restore()
        self._log.info(
            "dirobserver stopped: {delivered} events delivered, {held} not delivered; "
            "{overflows} queue overflows, {reconnects} Redis reconnects, "
            "{dropped} events left to listings",
            delivered=self.writer.delivered,
            held=self.writer.held(),
            overflows=self.core.overflows,
            reconnects=self.writer.reconnects,
            dropped=self.writer.dropped,
        )
        return result
