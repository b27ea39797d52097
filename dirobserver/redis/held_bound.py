"""
The bound on what the writer holds in memory (C{max_held_events}).

Past C{max_held} events held, new events are not held; their source is
remembered and asked to list its directory again once Redis has taken
everything held (the directory is the durable record).  Listings do not
overrun the bound: L{HeldBound.room} makes them wait until Redis has taken
half of what is held.

L{dirobserver.redis.writer} counts here every event it holds and every event
Redis acknowledges; it owns the counters the metrics read.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger


class Relistable(Protocol):
    """A source of events that can announce its files again by a listing."""

    def relist(self) -> defer.Deferred:
        """
        List the directory again: some of its events were not held.  The
        Deferred fires once it is listed (nobody here waits for it).
        """


class HeldBound:
    """
    How many events are held, against C{max_held}.

    @ivar held: events held, not acknowledged by Redis yet.
    @ivar max_held: the most events held before falling back to listings.
    """

    _log = Logger()

    def __init__(self, max_held: int) -> None:
        self.held = 0
        self.max_held = max_held
        self._low_water = max(1, max_held // 2)
        #: the sources with events not held, by identity, in order
        self._overflowed: dict[int, Relistable] = {}
        self._room_waiters: list[defer.Deferred] = []

    def set_max(self, max_held: int) -> None:
        """A new C{max_held} (a reload)."""
        self.max_held = max_held
        self._low_water = max(1, max_held // 2)

    def overflowed(self, source: Relistable | None) -> None:
        """Events of C{source} were not held: have it list its directory later."""
        if source is None or id(source) in self._overflowed:
            return
        first = not self._overflowed
        self._overflowed[id(source)] = source
        if first:
            self._log.warn(
                "{max} events held (max_held_events; Redis is unreachable or "
                "slower than the files arrive): not holding more; the "
                "directories concerned will be listed again once Redis has "
                "caught up",
                max=self.max_held,
            )

    def room(self) -> defer.Deferred | None:
        """
        None while there is room for more events; else a Deferred that fires
        once Redis has taken half of what is held.
        """
        if self.held < self._low_water:
            return None
        d: defer.Deferred = defer.Deferred()
        self._room_waiters.append(d)
        return d

    def wake(self) -> None:
        """Redis took some: fire the L{room} waiters once half of what was held is gone."""
        if self._room_waiters and self.held < self._low_water:
            waiters, self._room_waiters = self._room_waiters, []
            for d in waiters:
                d.callback(None)

    def relist_overflowed(self) -> None:
        """Everything held was delivered: ask the sources of the events not held to list again."""
        if not self._overflowed:
            return
        sources, self._overflowed = list(self._overflowed.values()), {}
        self._log.info(
            "Redis caught up; listing {n} directories for the events not held",
            n=len(sources),
        )
        for source in sources:
            source.relist()
