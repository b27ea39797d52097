"""
A listing's young files enter the table of files waiting to be complete as
they are when they enter it, not as the (cooperative, several reactor turns
long) scan saw them: found by the soak, where a file deleted during a
listing was announced a second later.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, task
from twisted.trial import unittest

from dirobserver import config
from dirobserver.listing import SectionListings
from dirobserver.settle import SettleTable
from dirobserver.stats import LISTING_BUCKETS, Histogram
from dirobserver.writer import RedisWriter


class HoldTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dirobserver-hold-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        text = (f"[common]\nredis_server = 127.0.0.1\nredis_port = 6399\n"
                f"[s:common]\nactive = true\ndirectory = {self.dir}\nqueue = q\nsettle = 2\n")
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
        self.listings = SectionListings(
            section, writer, lambda name, event, when: b"", None, task.Cooperator(started=False),
            defer.DeferredSemaphore(1), Histogram(LISTING_BUCKETS), lambda: True, self.clock,
            self.table,
        )

    def hold(self, paths: list[bytes]) -> None:
        for _ in self.listings._hold(paths, self.clock.seconds()):
            pass

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
