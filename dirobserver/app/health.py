"""
The observer's answers to "alive?" and "ready?": C{/livez} and C{/readyz}
(L{dirobserver.ops.http}), systemd's watchdog and C{STATUS=} line
(L{dirobserver.app.observer}).

L{HealthAnswers} is a base class of the core
(L{dirobserver.app.core.ObserverService}): the answers read the core's parts
(its watcher, watchdog, fanotify group, monitors and writer) each time they
are asked, and keep nothing of their own.
"""

from __future__ import annotations

import os

from dirobserver.announce.monitor import WATCHED, DirectoryMonitor
from dirobserver.config.settings import Settings
from dirobserver.redis.writer import RedisWriter
from dirobserver.sources.fanotify_choice import FanotifyGroup
from dirobserver.sources.inotify import InotifySource
from dirobserver.sources.liveness import InotifyLivenessProbe
from dirobserver.util.words import plural

#: Directories named one by one in L{HealthAnswers.problems}.
NAMED_MISSING = 10
#: What L{HealthAnswers.problems} says when the daemon is not alive.
NOT_ALIVE = "not alive: the event loop or the inotify probe is stuck"


class HealthAnswers:
    """
    "Alive?", "ready?", "what is wrong?" and the state in one line, read
    from the core's parts (see the module docstring).
    """

    running: bool | int
    settings: Settings
    writer: RedisWriter
    monitors: list[DirectoryMonitor]
    watcher: InotifySource | None
    watchdog: InotifyLivenessProbe | None
    fanotify: FanotifyGroup

    def watching(self) -> str:
        """C{"2 of 3 directories"}: how many are watched."""
        watched = sum(m.state == WATCHED for m in self.monitors)
        return f"{watched} of {plural(len(self.monitors), 'directory', 'directories')}"

    def alive(self) -> bool:
        """The reactor turns (this runs) and inotify answers the watchdog's probe (L{NOT_ALIVE})."""
        if not self.running or self.watcher is None or not self.watcher.connected:
            return False
        return (self.watchdog is None or self.watchdog.healthy()) and self.fanotify.healthy()

    def ready_problem(self) -> str | None:
        """
        None when every directory that exists is watched and Redis takes
        commands; else why not, in one line.
        """
        if not self.running:
            return "not running"
        if self.watcher is None:
            return "no inotify instance"
        for monitor in self.monitors:
            if monitor.state != WATCHED and os.path.isdir(monitor.directory):
                return self._not_watched(monitor)
        if not self.writer.redis_up():
            return self._redis_problem()
        return None

    def problems(self) -> list[str]:
        """
        Everything that is not well, one short line each (the bodies of
        /livez and /readyz), whether or not it makes the daemon unready: a
        missing directory does not (it is watched once it appears), yet the
        operator should see it.  When the daemon is not alive, why comes
        first.  At most L{NAMED_MISSING} directories are named; a last line
        counts the others.
        """
        if not self.running:
            return ["not running"]
        if self.watcher is None:
            return ["no inotify instance"]
        found = []
        if not self.alive():
            found.append(NOT_ALIVE)
        unwatched = [m for m in self.monitors if m.state != WATCHED]
        found += [self._not_watched(m) for m in unwatched[:NAMED_MISSING]]
        if len(unwatched) > NAMED_MISSING:
            found.append(f"{plural(len(unwatched) - NAMED_MISSING, 'more directory', 'more directories')}"
                         " not watched")
        if not self.writer.redis_up():
            found.append(self._redis_problem())
            held = self.writer.held()
            if held:
                found.append(f"{plural(held, 'event')} held, waiting for Redis")
        return found

    def _not_watched(self, monitor: DirectoryMonitor) -> str:
        where = f"[{monitor.section.name}] {monitor.directory}"
        if os.path.isdir(monitor.directory):
            return f"{where} exists but is not watched"
        return f"{where} is missing"

    def _redis_problem(self) -> str:
        return self.writer.problem or f"Redis at {self.settings.redis.describe()}: connecting"

    def status_text(self) -> str:
        """The state in one line, for systemd's STATUS=."""
        redis = ("Redis connected" if self.writer.redis_up()
                 else self.writer.problem or "Redis not connected")
        held = self.writer.held()
        return (f"Watching {self.watching()}; {redis}"
                + (f"; {plural(held, 'event')} held" if held else ""))
