"""
A listing's young files enter the table of files waiting to be complete as
they are when they enter it, not as the (cooperative, several reactor turns
long) scan saw them: found by the soak, where a file deleted during a
listing was announced a second later.  And only while the watch that was
set before the scan still covers the directory: without its events, a file
left in the table is announced by its timer however it is written (found
by the soak too, in a directory deleted and recreated during a catch-up).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, task
from twisted.trial import unittest

from dirobserver.announce.announcer import Announcer
from dirobserver.announce.listing import SectionListings
from dirobserver.announce.listing_context import ListingContext
from dirobserver.announce.listing_line import ListingLine
from dirobserver.announce.settle import SettleTable
from dirobserver.config import settings as config
from dirobserver.redis.writer import RedisWriter
from dirobserver.util.stats import LISTING_BUCKETS, Histogram


class HoldTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dirobserver-hold-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        text = (f"[common]\nredis_server = 127.0.0.1\nredis_port = 6399\n"
                f"[s:common]\nactive = true\ndirectory = {self.dir}\nqueue = q\nsettle = 2\n"
                f"poll_queue_limit = 0\n")
        settings = config.parse(text, os.path.join(self.dir, "c.ini"))
        section = settings.sections[0]
        self.clock = task.Clock()
        self.clock.advance(os.stat(self.dir).st_mtime + 100)
        self.announced: list[str] = []
        self.table = SettleTable(2.0, self.clock,
                                 lambda items, when: self.announced.extend(t for t, _e in items),
                                 lambda count: None)
        self.addCleanup(self.table.forget_all)
        writer = RedisWriter(settings.redis, 1000, self.clock)
        #: what the section's watch answers, call after call (the last one stays)
        self.watches: list[int | None] = [1]
        # The cooperator runs its steps on the test's clock.
        cooperator = task.Cooperator(scheduler=lambda step: self.clock.callLater(0, step))
        self.addCleanup(cooperator.stop)
        self.writer = writer
        #: what the source hands over when the listing asks for the events
        #: queued (L{catch_up}): names whose close event waited
        self.queued_closes: list[bytes] = []
        self.listings = SectionListings(
            ListingContext(section, writer, Announcer(section, writer, None), None, cooperator,
                           ListingLine(1, writer.when_connected), Histogram(LISTING_BUCKETS), self.watch,
                           self.clock),
            self.table,
            self.catch_up,
        )

    def catch_up(self) -> None:
        """Play the source: hand over the closes that waited, which put their files in the table."""
        closes, self.queued_closes = self.queued_closes, []
        for name in closes:
            self.table.hold(name, name.decode(), self.clock.seconds() + 2.0)

    def watch(self) -> int | None:
        return self.watches.pop(0) if len(self.watches) > 1 else self.watches[0]

    def hold(self, paths: list[bytes]) -> None:
        for _ in self.listings._hold(paths, self.clock.seconds(), 1):
            pass

    def young_files(self, count: int) -> list[bytes]:
        """C{count} files written now, their paths as a scan gives them."""
        for i in range(count):
            with open(os.path.join(self.dir, f"young{i:05d}"), "w"):
                pass
        now = self.clock.seconds()
        for i in range(count):
            os.utime(os.path.join(self.dir, f"young{i:05d}"), (now, now))
        return [b"young%05d" % i for i in range(count)]

    def list_once(self) -> bool:
        d = defer.ensureDeferred(self.listings._list_in_turn(False, None))
        for _ in range(50):
            self.clock.advance(0)
        return self.successResultOf(d)

    def test_a_file_deleted_since_the_scan_is_not_held(self):
        self.hold([b"gone"])
        self.assertNotIn(b"gone", self.table)
        self.clock.advance(5)
        self.assertEqual(self.announced, [])

    def test_a_file_written_since_the_scan_waits_from_its_last_write(self):
        path = os.path.join(self.dir, "busy")
        with open(path, "w") as f:
            f.write("x")
        written = self.clock.seconds() - 0.2
        os.utime(path, (written, written))
        # The scan saw it 1.9 s old; it was written again since.
        self.hold([b"busy"])
        self.assertIn(b"busy", self.table)
        self.clock.advance(0.5)  # 2 s after the scan's time: not yet
        self.assertEqual(self.announced, [])
        self.clock.advance(2.0)  # 2 s after the last write
        self.assertEqual(self.announced, ["busy"])

    def test_a_hold_stops_when_the_watch_changes(self):
        from dirobserver.announce.listing import CHUNK

        self.watches = [2]  # the look after the first chunk sees another watch
        entries = self.young_files(CHUNK + 10)
        for _ in self.listings._hold(entries, self.clock.seconds(), 1):
            pass
        self.assertEqual(len(self.table), CHUNK)
        self.assertNotIn(entries[-1], self.table)

    def test_a_listing_with_no_watch_leaves_nothing_in_the_table(self):
        self.young_files(3)
        self.watches = [None]
        self.assertFalse(self.list_once())
        self.assertEqual(len(self.table), 0)

    def test_a_listing_whose_watch_changed_during_the_scan_leaves_nothing(self):
        self.young_files(3)
        self.watches = [1, 2]  # set before the scan, another one after it
        self.assertFalse(self.list_once())
        self.assertEqual(len(self.table), 0)
        self.clock.advance(5)
        self.assertEqual(self.announced, [])

    def test_a_listing_under_one_watch_holds_its_young_files(self):
        self.young_files(3)
        self.assertTrue(self.list_once())
        self.assertEqual(len(self.table), 3)
        self.clock.advance(2.5)
        self.assertEqual(sorted(self.announced), ["young00000", "young00001", "young00002"])

    def test_a_listing_hands_over_the_queued_events_before_it_announces(self):
        """
        A file the scan finds quiet by its mtime, whose close waits in the
        source (read ahead, not handed over yet), is the table's to announce
        a settle after that close, not the listing's now (found by the soak:
        a file announced 38 ms before its settle was up).
        """
        path = os.path.join(self.dir, "closed-late")
        with open(path, "w"):
            pass
        old = self.clock.seconds() - 10
        os.utime(path, (old, old))
        self.queued_closes = [b"closed-late"]
        self.assertTrue(self.list_once())
        self.assertEqual(self.writer.held(), 0)  # not announced by the listing
        self.assertIn(b"closed-late", self.table)
        self.clock.advance(2.5)
        self.assertEqual(self.announced, ["closed-late"])  # by the table, a settle after the close
