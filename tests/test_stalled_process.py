"""
A process that stops for a while (SIGSTOP, a stalled VM) may run its late
timers before it reads the events of that while: when the watcher was
napping (a steady stream lets events gather for a few milliseconds), the
call that ends the nap and the late timers are due together, and run in
one pass before the next read.  A file waiting for
C{settle} seconds of quiet, written all along, must not be announced by its
late timer: the table reads the queued events first (found by the soak,
whose overflow fault SIGSTOPs the observer while slow writers go on).

In one process: the real observer core and writer on the real reactor,
blocked on purpose, a real valkey-server, a writer thread, real files.
"""

from __future__ import annotations

import threading
import time

import pytest
from twisted.internet import defer, reactor

from tests.kit.cases import CoreTestCase

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

SETTLE = 0.5


class StalledTests(CoreTestCase):
    @defer.inlineCallbacks
    def test_a_file_written_while_the_reactor_stalled_waits_for_quiet(self):
        self.make_core(f"settle={SETTLE}")
        self.start()
        yield self.writer.when_connected()
        monitor = self.core.monitors[0]
        self.assertTrue((yield self.wait(lambda: monitor.listings >= 1)), "never listed")
        slow = open(self.dir / "slow", "wb")
        self.addCleanup(slow.close)
        slow.write(b"x")
        slow.flush()
        # Its creation is read: it waits for quiet.
        yield self.wait(lambda: b"slow" in monitor.waiting)
        self.assertIn(b"slow", monitor.waiting)
        stop = threading.Event()
        last = [time.time()]

        def write() -> None:
            while not stop.wait(0.1):  # never SETTLE without a write
                slow.write(b"y")
                slow.flush()
                last[0] = time.time()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            # The reactor stalls for three times the settle while the watcher
            # naps: its timer and the nap's end are then due together.
            watcher = self.core.watcher

            stalled: list[bool] = []

            def stall() -> None:
                watcher.stopReading()
                reactor.callLater(0.004, watcher.startReading)
                time.sleep(3 * SETTLE)  # the stall is what is tested
                stalled.append(True)

            reactor.callLater(0, stall)
            self.assertTrue((yield self.wait(lambda: stalled)), "the reactor never stalled")
            # A file complete after the stall is announced a settle period
            # later: by then the slow file's timer has been judged.
            (self.dir / "marker").write_bytes(b"x")
            self.assertTrue((yield self.wait(lambda: "marker" in self.received)),
                            "marker never announced")
            self.assertEqual(list(self.received), ["marker"])
        finally:
            stop.set()
            writer.join()
        yield self.wait(lambda: "slow" in self.received)
        [(at, _event)] = self.received["slow"]
        self.assertGreaterEqual(at, last[0] + SETTLE)
