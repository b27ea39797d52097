"""
The table of files waiting to be complete (dirobserver.announce.settle.SettleTable),
driven by twisted.internet.task.Clock: when each file is announced, what
moves its time, the timer buckets, and the bound.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from dirobserver.announce.event import CREATED, EXISTS
from dirobserver.announce.settle import GRACE, TICK, SettleTable


class TableCase(unittest.TestCase):
    """A table on a Clock, what it announced, and no call left at the end."""

    def table(self, settle: float, limit: int = 1000, start: float = 1000.0, catch_up=None) -> SettleTable:
        self.clock = task.Clock()
        self.clock.advance(start)
        self.announced: list[tuple[float, list[tuple[str, str]]]] = []
        self.full: list[int] = []
        table = SettleTable(settle, self.clock, lambda items, when: self.announced.append((when, items)),
                            self.full.append, limit=limit, catch_up=catch_up)
        self.addCleanup(self.assert_no_call_left, table)
        return table

    def assert_no_call_left(self, table: SettleTable) -> None:
        table.forget_all()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def names(self) -> list[str]:
        return [text for _when, items in self.announced for text, _event in items]

    def advance_to(self, when: float) -> None:
        self.clock.advance(when - self.clock.seconds())


class TableTests(TableCase):

    def test_a_quiet_file_is_announced_settle_after_its_last_change_never_before(self):
        table = self.table(settle=2.0)
        table.quiet(b"a", "a", 1000.0)
        self.advance_to(1001.0)
        table.touched(b"a", 1001.0)
        self.advance_to(1002.999)
        self.assertEqual(self.announced, [])
        self.advance_to(1003.0 + TICK)
        self.assertEqual(self.announced, [(1003.0 + TICK, [("a", CREATED)])])
        self.assertEqual(len(table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_files_due_in_one_tick_share_one_call_and_a_moved_file_leaves_no_call(self):
        table = self.table(settle=1.0, limit=2000)
        for i in range(1000):
            table.quiet(b"f%d" % i, f"f{i}", 1000.001 + i * TICK / 2000)
        self.assertEqual(table.timers(), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        # Writes within one tick move nothing; a later write moves the file,
        # and a bucket left empty cancels its call.
        table.quiet(b"alone", "alone", 1000.5)
        table.touched(b"alone", 1000.5 + TICK / 10)
        self.assertEqual(table.timers(), 2)
        table.touched(b"alone", 1000.8)
        self.assertEqual(table.timers(), 2)
        self.advance_to(1001.0 + TICK)
        self.assertEqual(len(self.announced), 1)
        self.assertEqual(len(self.announced[0][1]), 1000)
        self.advance_to(1002.0)
        self.assertEqual(self.names()[-1], "alone")

    def test_an_open_file_waits_for_its_close_whatever_happens_meanwhile(self):
        table = self.table(settle=0.0)
        table.open(b"a", "a")
        table.touched(b"a", 1000.0)
        self.clock.advance(3600)
        self.assertEqual(self.announced, [])
        self.assertIn(b"a", table)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # settle 0: complete at its close, announced by the caller now.
        self.assertEqual(table.closed(b"a", 4600.0), "a")
        self.assertNotIn(b"a", table)
        # A later close of the same name (a rewrite) is no new file.
        self.assertIsNone(table.closed(b"a", 4601.0))

    def test_with_a_settle_a_closed_file_rewritten_is_announced_once_after_the_last_change(self):
        table = self.table(settle=1.0)
        table.open(b"a", "a")
        self.assertIsNone(table.closed(b"a", 1000.0))
        self.advance_to(1000.5)
        table.touched(b"a", 1000.5)  # reopened and written again
        self.advance_to(1000.9)
        self.assertIsNone(table.closed(b"a", 1000.9))
        self.advance_to(1001.85)
        self.assertEqual(self.announced, [])
        self.advance_to(1002.0)
        self.assertEqual(self.names(), ["a"])
        self.assertGreaterEqual(self.announced[0][0], 1001.9)

    def test_an_unsure_file_is_complete_after_the_grace_unless_an_open_shows_up(self):
        table = self.table(settle=0.0)
        table.unsure(b"linked", "linked", 1000.0)
        table.unsure(b"split", "split", 1000.0)
        table.opened(b"split")  # the open of a created file, in the next read
        self.advance_to(1000.0 + GRACE - TICK / 2)
        self.assertEqual(self.announced, [])
        self.advance_to(1000.0 + GRACE + TICK)
        self.assertEqual(self.names(), ["linked"])
        self.assertIn(b"split", table)
        self.assertEqual(table.closed(b"split", 1001.0), "split")

    def test_an_unsure_file_waits_the_longer_of_the_grace_and_the_settle(self):
        table = self.table(settle=0.5)
        table.unsure(b"l", "l", 1000.0)
        self.advance_to(1000.49)
        self.assertEqual(self.announced, [])
        self.advance_to(1000.5 + TICK)
        self.assertEqual(self.names(), ["l"])

    def test_a_forgotten_file_is_never_announced_and_its_call_is_cancelled(self):
        table = self.table(settle=1.0)
        table.quiet(b"a", "a", 1000.0)
        table.open(b"b", "b")
        table.forget(b"a")
        table.forget(b"b")
        table.forget(b"never-seen")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.announced, [])
        self.assertEqual(len(table), 0)

    def test_past_its_limit_the_table_forgets_every_file_and_says_how_many(self):
        table = self.table(settle=1.0, limit=10)
        for i in range(6):
            table.open(b"o%d" % i, f"o{i}")
        for i in range(4):
            table.quiet(b"q%d" % i, f"q{i}", 1000.0)
        self.assertEqual(self.full, [])
        table.open(b"one-more", "one-more")
        self.assertEqual(self.full, [10])
        self.assertEqual(table.overflows, 1)
        # The file that came waits as it should; the others are forgotten.
        self.assertEqual(len(table), 1)
        self.assertIn(b"one-more", table)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # A file already held does not count twice.
        for i in range(8):
            table.quiet(b"x%d" % i, f"x{i}", 1000.0)
        table.quiet(b"x0", "x0", 1000.0)
        table.open(b"one-more", "one-more")
        self.assertEqual((len(table), table.overflows), (9, 1))
        self.assertIsNone(table.closed(b"one-more", 1000.0))
        self.clock.advance(5)
        self.assertEqual(sorted(self.names()), ["one-more"] + [f"x{i}" for i in range(8)])

    def test_a_listing_holds_young_files_as_exists_in_half_the_table(self):
        table = self.table(settle=5.0, limit=8)
        table.open(b"open", "open")
        held = [table.hold(b"y%d" % i, f"y{i}", 1002.0 + i) for i in range(5)]
        self.assertEqual(held, [True, True, True, False, False])
        # A file the table has already is not held again (nor refused).
        self.assertTrue(table.hold(b"open", "open", 1001.0))
        self.assertTrue(table.hold(b"y0", "y0", 1009.0))
        self.advance_to(1002.0 + TICK)
        self.assertEqual(self.announced, [(1002.0 + TICK, [("y0", EXISTS)])])
        # Modified meanwhile: it waits for the settle again.
        table.touched(b"y1", 1002.5)
        self.advance_to(1007.0)
        self.assertEqual(self.names(), ["y0", "y2"])
        self.advance_to(1007.5 + TICK)
        self.assertEqual(self.names(), ["y0", "y2", "y1"])

    def test_a_name_moved_over_a_waiting_file_waits_as_a_new_file(self):
        table = self.table(settle=1.0)
        table.open(b"a", "a")
        table.quiet(b"a", "a", 1000.0)
        self.assertEqual(len(table), 1)
        self.advance_to(1001.0 + TICK)
        self.assertEqual(self.names(), ["a"])

    def test_a_failing_announce_is_logged_and_the_table_goes_on(self):
        table = self.table(settle=1.0)

        def fail(items, when):
            raise RuntimeError("writer gone")

        table._announce = fail
        table.quiet(b"a", "a", 1000.0)
        self.clock.advance(2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CatchUpTests(TableCase):
    """
    Before a bucket is announced, the events already queued are read: after
    the process was stopped, its late timers must not announce files whose
    writes of that while are still unread (found by the soak).
    """

    def test_a_file_written_while_the_process_was_stopped_waits_on(self):
        queued: list[bytes] = []
        table = self.table(settle=1.0, catch_up=lambda: [table.touched(n, self.clock.seconds()) for n in queued])
        table.quiet(b"slow", "slow", 1000.0)
        table.quiet(b"done", "done", 1000.0)
        # Stopped from 1000.5 to 1003: "slow" was written meanwhile.
        queued.append(b"slow")
        self.advance_to(1003.0)
        self.assertEqual(self.names(), ["done"])
        queued.clear()
        self.advance_to(1004.0 + TICK)
        self.assertEqual(self.names(), ["done", "slow"])

    def test_the_whole_bucket_moved_announces_nothing_and_leaves_no_call(self):
        table = self.table(settle=1.0, catch_up=lambda: table.touched(b"a", self.clock.seconds()))
        table.quiet(b"a", "a", 1000.0)
        self.advance_to(1001.0 + TICK)
        self.assertEqual(self.announced, [])
        self.assertEqual(table.timers(), 1)
        self.assertIn(b"a", table)

    def test_lost_events_forget_the_bucket_while_it_fires(self):
        table = self.table(settle=1.0, catch_up=lambda: table.forget_all())
        for name in (b"a", b"b"):
            table.quiet(name, name.decode(), 1000.0)
        self.advance_to(1001.0 + TICK)
        self.assertEqual(self.announced, [])
        self.assertEqual(len(table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
