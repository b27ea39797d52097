"""
The listings' line (L{dirobserver.announce.listing_line.ListingLine}): a few at a time, in order,
only while Redis takes commands.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from dirobserver.announce.listing_line import ListingLine


class Redis:
    """Stands for the writer's C{when_connected}: up or down, on demand."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.waiters: list[defer.Deferred] = []

    def when_connected(self) -> defer.Deferred:
        if self.up:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self.waiters.append(d)
        return d

    def connect(self) -> None:
        self.up = True
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(None)


class TurnsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.redis = Redis(up=True)
        self.turns = ListingLine(2, self.redis.when_connected)
        self.started: list[str] = []
        self.running: dict[str, defer.Deferred] = {}

    def job(self, name: str):
        def start() -> defer.Deferred:
            self.started.append(name)
            d = self.running[name] = defer.Deferred()
            return d
        return start

    def test_at_most_size_at_a_time_in_the_order_asked(self):
        done = [self.turns.take(self.job(n)) for n in "abcde"]
        self.assertEqual(self.started, ["a", "b"])
        self.assertEqual(len(self.turns), 3)
        self.running["b"].callback("B")
        self.assertEqual(self.started, ["a", "b", "c"])
        self.assertEqual(self.successResultOf(done[1]), "B")
        self.assertNoResult(done[0])
        self.running["a"].callback("A")
        self.running["c"].callback("C")
        self.assertEqual(self.started, ["a", "b", "c", "d", "e"])
        self.assertEqual(len(self.turns), 0)

    def test_nothing_starts_before_redis_takes_commands(self):
        self.redis.up = False
        for n in "abc":
            self.turns.take(self.job(n))
        self.assertEqual(self.started, [])
        # One wait for Redis, not one per entry of the line.
        self.assertEqual(len(self.redis.waiters), 1)
        self.redis.connect()
        self.assertEqual(self.started, ["a", "b"])

    def test_a_failed_turn_frees_its_place_and_fails_its_caller(self):
        first = self.turns.take(self.job("a"))
        self.turns.take(self.job("b"))
        self.turns.take(self.job("c"))
        self.running["a"].errback(ValueError("boom"))
        self.failureResultOf(first, ValueError)
        self.assertEqual(self.started, ["a", "b", "c"])

    def test_a_start_that_raises_fails_its_caller(self):
        def broken() -> defer.Deferred:
            raise OSError("nope")
        self.failureResultOf(self.turns.take(broken), OSError)
        self.turns.take(self.job("a"))
        self.turns.take(self.job("b"))
        self.assertEqual(self.started, ["a", "b"])

    def test_thousands_that_end_at_once_do_not_recurse(self):
        # A listing with nothing to do (no watch) ends in its own turn: the
        # next must not start from inside the previous one's callback.
        self.redis.up = False
        ended = []
        for i in range(20000):
            self.turns.take(lambda i=i: defer.succeed(i)).addCallback(ended.append)
        self.redis.connect()
        self.assertEqual(ended, list(range(20000)))
        self.assertEqual(len(self.turns), 0)
