"""
Listings asked while one waits for its turn or runs (L{SectionListings.relist}):
none is lost, and one listing covers as many as it can.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from dirobserver.announce.announcer import Announcer
from dirobserver.announce.listing import SectionListings
from dirobserver.announce.listing_context import ListingContext
from dirobserver.announce.listing_requests import covering
from dirobserver.config import settings as config
from dirobserver.redis.writer import RedisWriter
from dirobserver.util.stats import LISTING_BUCKETS, Histogram

FULL = (False, None)
RESUME = (True, None)


class CoveringTests(unittest.TestCase):
    def test_a_full_listing_covers_everything(self):
        for other in (FULL, RESUME, (False, 5.0)):
            self.assertEqual(covering(FULL, other), FULL)
            self.assertEqual(covering(other, FULL), FULL)

    def test_a_resumed_listing_covers_recent_files(self):
        self.assertEqual(covering(RESUME, (False, 5.0)), RESUME)
        self.assertEqual(covering((False, 5.0), RESUME), RESUME)

    def test_two_looks_at_recent_files_take_the_earlier_time(self):
        self.assertEqual(covering((False, 7.0), (False, 5.0)), (False, 5.0))


class HeldLine:
    """A line of listings that starts nothing until the test says so."""

    def __init__(self) -> None:
        self.line: list[Callable[[], defer.Deferred]] = []

    def take(self, start: Callable[[], defer.Deferred]) -> defer.Deferred:
        self.line.append(start)
        return defer.Deferred()

    def run_next(self) -> defer.Deferred:
        return self.line.pop(0)()


class RequestTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        text = (f"[common]\nredis_server = 127.0.0.1\nredis_port = 6399\n"
                f"[s:common]\nactive = true\ndirectory = {self.dir}\nqueue = q\n")
        section = config.parse(text, os.path.join(self.dir, "c.ini")).sections[0]
        self.clock = task.Clock()
        self.turns = HeldLine()
        writer = RedisWriter(config.parse(text, "c.ini").redis, 1000, self.clock)
        self.listings = SectionListings(
            ListingContext(
                section, writer, Announcer(section, writer, None), None, task.Cooperator(started=False),
                self.turns, Histogram(LISTING_BUCKETS), lambda: 1, self.clock,  # type: ignore[arg-type]
            ),
        )
        #: (resume, since) of each listing run
        self.ran: list[tuple[bool, Any]] = []

        async def listed(resume: bool, since: Any) -> bool:
            self.ran.append((resume, since))
            return True

        self.listings._list_in_turn = listed  # type: ignore[method-assign]

    def test_a_full_listing_asked_while_a_look_waits_is_not_lost(self):
        done = self.listings.relist(since=5.0)
        self.listings.relist()  # a full one (after an overflow, say)
        self.turns.run_next()
        self.assertEqual(self.ran, [FULL])
        self.assertEqual(self.turns.line, [])  # it covered both
        self.successResultOf(done)

    def test_requests_during_a_listing_get_one_more(self):
        done = self.listings.relist()
        started = self.turns.line.pop(0)

        async def listed(resume: bool, since: Any) -> bool:
            self.ran.append((resume, since))
            # Asked while this one reads the directory: it may miss them.
            self.listings.relist(since=9.0)
            self.listings.relist(since=3.0)
            self.listings._list_in_turn = plain  # type: ignore[method-assign]
            return True

        async def plain(resume: bool, since: Any) -> bool:
            self.ran.append((resume, since))
            return True

        self.listings._list_in_turn = listed  # type: ignore[method-assign]
        started()
        self.assertNoResult(done)
        self.turns.run_next()
        self.assertEqual(self.ran, [FULL, (False, 3.0)])
        self.successResultOf(done)
