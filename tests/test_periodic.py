"""L{Periodic}: a failing run is logged and the next run still happens."""

from twisted.internet import defer, task
from twisted.trial import unittest

from dirobserver.util.periodic import Periodic


class PeriodicTests(unittest.TestCase):
    def test_keeps_running_after_an_exception(self):
        """A LoopingCall would stop for good here; Periodic goes on."""
        clock = task.Clock()
        runs = []

        def work():
            runs.append(clock.seconds())
            if len(runs) == 2:
                raise RuntimeError("transient")

        p = Periodic(work, 5, "test work", clock)
        p.start(now=True)
        clock.advance(5)
        clock.advance(5)
        clock.advance(5)
        self.assertEqual(runs, [0, 5, 10, 15])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(p.running)
        p.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_keeps_running_after_a_failed_deferred(self):
        clock = task.Clock()
        calls = []

        def work():
            calls.append(1)
            return defer.fail(ValueError("no"))

        p = Periodic(work, 1, "test work", clock)
        p.start()
        for _ in range(3):
            clock.advance(1)
        self.assertEqual(len(calls), 3)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)
        p.stop()
