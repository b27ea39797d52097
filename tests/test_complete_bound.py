"""
The bound on files waiting to be complete, in one process: the real
observer core (watcher, monitor, listings) and writer on the real reactor,
a real valkey-server, real files kept open.  The table's limit is made
small so that a few open files go past it.

Past the limit the section forgets the files it held and lists its
directory; the listing leaves the young files it can in the table and looks
at the others again once they are old enough.  So every file is announced
in the end, none before C{settle} seconds without a modification, and the
files opened after the forgetting still wait for their close.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import RedisServer  # noqa: E402

from dirobserver import config  # noqa: E402
from dirobserver.service import ObserverService  # noqa: E402
from dirobserver.writer import RedisWriter  # noqa: E402

SETTLE = 0.5


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class BoundTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.client = self.server.client()
        self.addCleanup(self.client.close)
        self.dir = Path(tempfile.mkdtemp(prefix="dirobserver-bound-", dir="/dev/shm"
                                         if Path("/dev/shm").is_dir() else None))
        self.addCleanup(shutil.rmtree, self.dir, True)
        text = (f"[common]\nredis_server=127.0.0.1\nredis_port={self.server.port}\n"
                f"monitor_inactivitytimeout=0\n[s:common]\nactive=true\nqueue=q\n"
                f"directory={self.dir}\nannounce=closed\nsettle={SETTLE}\n")
        settings = config.parse(text, "bound.ini")
        self.writer = RedisWriter(settings.redis, settings.max_held_events, reactor)
        self.core = ObserverService(settings, self.writer, reactor)
        self.received: dict[str, list[tuple[float, dict]]] = {}

    @defer.inlineCallbacks
    def tearDown(self):
        if self.core.running:
            yield self.core.stopService()
        if self.writer.running:
            yield self.writer.stopService()

    def pop(self) -> None:
        while (raw := self.client.rpop("q")) is not None:
            event = json.loads(raw)
            self.received.setdefault(event["filename"], []).append((time.time(), event))

    @defer.inlineCallbacks
    def wait(self, predicate, seconds: float = 10.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pop()
            if predicate():
                return True
            yield sleep(0.01)
        self.pop()
        return predicate()

    @defer.inlineCallbacks
    def test_past_the_limit_files_are_forgotten_then_announced_once_old_enough(self):
        self.writer.startService()
        self.core.startService()
        yield self.writer.when_connected()
        monitor = self.core.monitors[0]
        yield self.wait(lambda: monitor.listings == 1)
        monitor.waiting.limit = 10
        first = [open(self.dir / f"a{i}", "wb") for i in range(10)]
        written = time.time()  # no later than their last modification
        for f in first:
            f.write(b"x")
            f.flush()
        yield self.wait(lambda: len(monitor.waiting) == 10)
        # More: the table is full and forgets the ten; the listing cannot
        # hold them (the new ones fill more than its half).
        second = [open(self.dir / f"b{i}", "wb") for i in range(6)]
        for f in second:
            f.write(b"x")
            f.flush()
        yield self.wait(lambda: monitor.waiting.overflows == 1 and monitor.listings == 2)
        self.assertEqual(self.received, {})
        # Forgotten, they are announced once unmodified for the settle, even
        # though still open: the listing cannot know more.
        ok = yield self.wait(lambda: len(self.received) == 10)
        self.assertTrue(ok, self.received)
        self.assertEqual(sorted(self.received), [f"a{i}" for i in range(10)])
        for name, [(at, event)] in self.received.items():
            self.assertEqual(event["event"], "exists")
            self.assertGreaterEqual(at, written + SETTLE, name)
        # By later looks at the files modified since the first listing (one
        # more if some were still too young at the first look), which
        # announce nothing twice (counted at the end).
        self.assertGreaterEqual(monitor.listings, 3)
        # The files opened after the forgetting still wait for their close.
        yield sleep(SETTLE * 2)
        self.pop()
        self.assertEqual(len(self.received), 10)
        closed = time.time()
        for f in first + second:
            f.close()
        ok = yield self.wait(lambda: len(self.received) == 16)
        self.assertTrue(ok, self.received)
        for i in range(6):
            [(at, event)] = self.received[f"b{i}"]
            self.assertEqual(event["event"], "created")
            self.assertGreaterEqual(at, closed + SETTLE)
        yield sleep(SETTLE * 2)
        self.pop()
        self.assertEqual(sum(map(len, self.received.values())), 16)
        self.assertEqual(len(monitor.waiting), 0)
