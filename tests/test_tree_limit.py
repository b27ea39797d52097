"""
The inotify watch limit in a tree, in one process: the real observer core
(watcher, monitor, tree, poller, listings) and writer on the real reactor,
a real valkey-server, real directories.

C{fs.inotify.max_user_watches} is machine-wide and cannot be lowered for one
test, so the limit is injected through the watcher's libc seam
(L{dirobserver.sources.inotify_calls.LibcInotify}, the C{calls} of a L{InotifySource}): a
L{LimitedCalls} lets a given number of watches be made and refuses the next
ones with C{ENOSPC}, as the kernel does; raising its limit stands for
watches becoming available again.

Past the limit, the sub-directories that cannot be watched are polled: one
log line says so, naming the sysctl; nothing in them is missed; once watches
are available they are watched by inotify again, and polled no more.
"""

from __future__ import annotations

import errno
import json
import os
import time

import pytest
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher

from dirobserver.app.core import ObserverService
from dirobserver.sources.inotify import InotifySource
from dirobserver.sources.inotify_calls import LIBC_INOTIFY
from dirobserver.sources.interface import WatchError
from tests.kit.cases import CoreTestCase
from tests.kit.waiting import sleep

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

POLL = 0.2


class LimitedCalls:
    """The real inotify calls, with at most C{limit} watches (then ENOSPC)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.watches: set[int] = set()
        self.refused = 0

    def init(self) -> int:
        return LIBC_INOTIFY.init()

    def add_watch(self, fd: int, path: bytes, mask: int) -> int:
        wd = LIBC_INOTIFY.add_watch(fd, path, mask)
        if wd not in self.watches:
            if len(self.watches) >= self.limit:
                LIBC_INOTIFY.rm_watch(fd, wd)
                self.refused += 1
                raise WatchError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            self.watches.add(wd)
        return wd

    def rm_watch(self, fd: int, wd: int) -> None:
        self.watches.discard(wd)
        LIBC_INOTIFY.rm_watch(fd, wd)


class LimitedService(ObserverService):
    """The core, with a watcher whose libc calls are L{LimitedCalls} (the test's seam)."""

    calls: LimitedCalls

    def _new_watcher(self) -> InotifySource:
        watcher = InotifySource(self._reactor, on_overflow=self._overflowed, calls=self.calls)
        watcher.startReading()
        return watcher


class WatchLimitTests(CoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_core(f"recursive=true\npoll_interval={POLL}", core=LimitedService)
        self.core.calls = LimitedCalls(limit=4)  # the top and 3 sub-directories
        self.received: set[str] = set()
        self.logged: list[str] = []
        globalLogPublisher.addObserver(self._log)
        self.addCleanup(globalLogPublisher.removeObserver, self._log)

    def _log(self, event) -> None:
        if event.get("log_level") is not None and event["log_level"].name in ("warn", "info"):
            self.logged.append(f"{event['log_level'].name}: {formatEvent(event)}")

    @defer.inlineCallbacks
    def wait_for(self, paths: set[str], seconds: float = 10.0):
        deadline = time.monotonic() + seconds
        while True:
            while (raw := self.client.rpop("q")) is not None:
                event = json.loads(raw)
                self.received.add(os.path.join(event["directory"], event["filename"]))
            if paths <= self.received or time.monotonic() > deadline:
                return paths - self.received
            yield sleep(0.01)  # the polling interval

    @defer.inlineCallbacks
    def until(self, predicate, seconds: float = 10.0):
        """Whether C{predicate()} became true within C{seconds}."""
        deadline = time.monotonic() + seconds
        while not predicate() and time.monotonic() < deadline:
            yield sleep(0.01)  # the polling interval
        return predicate()

    def write(self, *parts: str) -> str:
        path = self.dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        return str(path)

    def lines(self, text: str) -> list[str]:
        return [line for line in self.logged if text in line]

    @defer.inlineCallbacks
    def test_past_the_limit_subdirectories_are_polled_then_watched_again(self):
        present = {self.write(f"d{i}", "old") for i in range(8)}
        self.start()
        monitor = self.core.monitors[0]
        missing = yield self.wait_for(present)
        self.assertEqual(missing, set())
        tree = monitor.tree
        self.assertEqual(tree.subdirectories, 8)
        self.assertEqual(len(self.core.calls.watches), 4)
        self.assertTrue(tree.wants_names())  # some are polled
        self.assertEqual(tree.counts(), {"watched": 3, "polled": 0, "past_watch_limit": 5})
        self.assertEqual(len(self.lines("watch limit is reached")), 1, self.logged)
        self.assertIn("fs.inotify.max_user_watches", self.lines("watch limit")[0])

        # New files everywhere, and a new sub-tree: nothing is missed.
        new = {self.write(f"d{i}", "new") for i in range(8)}
        new.add(self.write("d7", "deeper", "more", "f"))
        missing = yield self.wait_for(new)
        self.assertEqual(missing, set())
        self.assertEqual(len(self.lines("watch limit is reached")), 1)

        # Watches available again: after a round of scans, all are watched.
        self.core.calls.limit = 100
        yield self.until(lambda: not tree.wants_names())
        self.assertFalse(tree.wants_names(), "still polling")
        self.assertEqual(len(self.core.calls.watches), 11)  # the top and 10 sub-directories
        self.assertEqual(tree.counts(), {"watched": 10, "polled": 0, "past_watch_limit": 0})
        self.assertEqual(len(self.lines("inotify watches are available again")), 1, self.logged)
        # Each is scanned once more (for what came before its watch), then no more.
        yield self.until(lambda: len(monitor._poller) == 0)
        self.assertEqual(len(monitor._poller), 0)
        scans = monitor._poller.scans
        later = {self.write(f"d{i}", "later") for i in range(8)}
        missing = yield self.wait_for(later, seconds=5)
        self.assertEqual(missing, set())
        # No scan marks its own absence: three poll intervals without one
        # is what is tested.
        yield sleep(POLL * 3)
        self.assertEqual(monitor._poller.scans, scans)
