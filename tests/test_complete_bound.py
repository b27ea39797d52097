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

import time

import pytest
from twisted.internet import defer

from tests.kit.cases import CoreTestCase

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

SETTLE = 0.5


class BoundTests(CoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_core(f"announce=closed\nsettle={SETTLE}")

    @defer.inlineCallbacks
    def witness(self, name: str):
        """Make a complete file C{name} and wait for its event."""
        (self.dir / name).write_bytes(b"x")
        ok = yield self.wait(lambda: name in self.received)
        self.assertTrue(ok, f"{name} never announced")

    @defer.inlineCallbacks
    def test_past_the_limit_files_are_forgotten_then_announced_once_old_enough(self):
        self.start()
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
        # The files opened after the forgetting still wait for their close:
        # a file complete now is announced a settle period later, after
        # anything that would have announced them.
        yield self.witness("m1")
        self.assertEqual(sorted(self.received), [f"a{i}" for i in range(10)] + ["m1"])
        closed = time.time()
        for f in first + second:
            f.close()
        ok = yield self.wait(lambda: len(self.received) == 17)
        self.assertTrue(ok, self.received)
        for i in range(6):
            [(at, event)] = self.received[f"b{i}"]
            self.assertEqual(event["event"], "created")
            self.assertGreaterEqual(at, closed + SETTLE)
        yield self.witness("m2")  # after anything more of the 16 files
        self.assertEqual(sum(map(len, self.received.values())), 18)
        self.assertEqual(len(monitor.waiting), 0)
