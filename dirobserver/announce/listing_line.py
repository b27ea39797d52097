"""
The line of listings waiting for their turn: a few run at a time, in the
order asked, while Redis takes commands.

Every section is listed at start-up, after a reconnect, after an overflow.
A listing reads its directory, asks its queue's length and pushes events:
thousands run at once would each hold a cooperative task, a scan and an
C{LLEN} in flight.  So a listing waits for its turn, here, as one entry of
a line: the function that will start it and the Deferred its caller holds.

It used to wait as a suspended coroutine chain instead (waiting for Redis,
then for a semaphore), and that cost about 2.5 kB per waiting listing: 25 MB
of the start of 10,000 sections, measured with tracemalloc.  The line costs
one Deferred and one tuple each.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure


class ListingLine:
    """
    The listings of every section waiting for their turn: runs functions
    returning Deferreds, at most C{size} at a time, first asked first run,
    only once C{connected()} has fired.
    """

    def __init__(self, size: int, connected: Callable[[], defer.Deferred]) -> None:
        """
        @param connected: a Deferred that fires once Redis takes commands
            (at once while it does: L{dirobserver.redis.writer.RedisWriter.when_connected}).
        """
        self._free = size
        self._connected = connected
        self._line: collections.deque[tuple[Callable[[], defer.Deferred], defer.Deferred]] = (
            collections.deque())
        #: a wait for Redis is under way (one at a time, not one per entry)
        self._asking = False
        #: L{_next} is on the stack: a turn that ends at once does not
        #: start the next one from within (10,000 of them would recurse)
        self._starting = False

    def __len__(self) -> int:
        """How many wait for their turn."""
        return len(self._line)

    def take(self, start: Callable[[], defer.Deferred]) -> defer.Deferred:
        """
        Call C{start} in a turn; the turn lasts until its Deferred fires.

        @return: a Deferred that fires with what C{start}'s did.
        """
        done: defer.Deferred = defer.Deferred()
        self._line.append((start, done))
        self._next()
        return done

    def _next(self) -> None:
        if self._starting:
            return
        self._starting = True
        try:
            while self._free > 0 and self._line and self._redis_up():
                start, done = self._line.popleft()
                self._free -= 1
                defer.maybeDeferred(start).addBoth(self._ended, done)
        finally:
            self._starting = False

    def _redis_up(self) -> bool:
        if self._asking:
            return False
        ready = self._connected()
        if ready.called:
            return True
        self._asking = True
        ready.addCallback(self._up)
        return False

    def _up(self, _: Any) -> None:
        self._asking = False
        self._next()

    def _ended(self, result: Any, done: defer.Deferred) -> None:
        self._free += 1
        self._next()
        if isinstance(result, Failure):
            done.errback(result)
        else:
            done.callback(result)
