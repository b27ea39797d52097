"""
A monitored directory deleted and recreated while something holds the old
one open: the kernel reports the old directory's end only when the last
descriptor of it is closed, so for a while the watch looks alive while the
path leads to a new directory whose events nobody receives.  A listing in
that while (the insurance listing after a Redis reconnection, a catch-up)
must not take the new directory's files for the watched one's: it would
leave a file still being written in the table with no events to keep it
there, and announce it early (found by the soak, seconds-long in its runs).

In one process: the real observer core and writer, a real valkey-server,
real directories.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from twisted.internet import defer

from tests.kit.cases import CoreTestCase
from tests.kit.waiting import sleep

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

SETTLE = 0.5


class ReplacedTests(CoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_core(f"announce=closed\nsettle={SETTLE}")

    @defer.inlineCallbacks
    def test_a_file_of_a_recreated_directory_waits_for_its_close(self):
        self.start()
        yield self.writer.when_connected()
        monitor = self.core.monitors[0]
        self.assertTrue((yield self.wait(lambda: monitor.listings >= 1)), "never listed")
        holder = os.open(self.dir, os.O_RDONLY)  # delays the kernel's end of watch
        try:
            shutil.rmtree(self.dir)
            self.dir.mkdir()
            slow = open(self.dir / "slow", "wb")
            slow.write(b"x")
            slow.flush()
            monitor.relist()  # as after a Redis reconnection
            for _ in range(8):  # written every 0.2 s: never SETTLE unmodified
                yield sleep(0.2)  # the writer's pace
                slow.write(b"y")
                slow.flush()
                self.pop()
            self.assertEqual(self.received, {})
        finally:
            os.close(holder)
        # The end of the old watch comes; the new directory is watched and
        # listed while the file is still written.
        deadline = time.monotonic() + 10
        while monitor._watches < 2 and time.monotonic() < deadline:
            yield sleep(0.2)  # the writer's pace
            slow.write(b"z")
            slow.flush()
        self.assertEqual(monitor._watches, 2)
        # A file complete now is announced a settle period later; the slow
        # file, still written, must not be announced meanwhile.
        (self.dir / "marker").write_bytes(b"x")
        deadline = time.monotonic() + 10
        while "marker" not in self.received and time.monotonic() < deadline:
            yield sleep(0.2)  # the writer's pace
            slow.write(b"z")
            slow.flush()
            self.pop()
        self.assertEqual(list(self.received), ["marker"])
        closed = time.time()
        slow.close()
        yield self.wait(lambda: "slow" in self.received)
        [(at, _event)] = self.received["slow"]
        self.assertGreaterEqual(at, closed + SETTLE)
