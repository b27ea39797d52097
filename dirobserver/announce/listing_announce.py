"""
The announcing half of a listing: the files it found (their sorted keys,
oldest first, L{dirobserver.announce.scan}) become C{"exists"} events.

It never makes the writer drop an event: it pauses while the writer holds
three quarters of C{max_held_events} (whatever other listings run at the
same time), which leaves room for live events; dropping here would ask for
this very listing again, endlessly.  Files that wait in the section's settle
table (not complete yet) are the table's to announce, and the events read
ahead of the reactor are handed over before the table is consulted (see
L{ListingAnnouncer._caught_up}).  With C{announce_once}, only what was never
announced is (L{dirobserver.announce.once}), and a full listing prunes the
record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from twisted.logger import Logger

from dirobserver.announce.event import EXISTS, decode_name
from dirobserver.announce.listing_context import ListingContext
from dirobserver.announce.once import ListedOnce, RecordUnavailable
from dirobserver.announce.scan import CHUNK, KEY_WIDTH
from dirobserver.announce.settle import SettleTable
from dirobserver.util.backoff import Recurring
from dirobserver.util.failures import describe_failure


class ListingAnnouncer:
    """
    Announces what the listings of one section found (see the module
    docstring).

    @ivar waiting: where the section's young files wait now: its table, or
        None (the listing says which, see
        L{dirobserver.announce.listing.SectionListings.polled}).
    @ivar once: the announcing of a section with C{announce_once} (None:
        without).
    """

    _log = Logger()

    def __init__(self, context: ListingContext, waiting: SettleTable | None,
                 catch_up: Callable[[], None] | None, stopped: Callable[[], bool]) -> None:
        """
        @param catch_up: hands over the events already read or queued for
            the directory (called only while there is a table: L{_caught_up}).
        @param stopped: whether the section stopped: announce nothing more.
        """
        self.section = context.section
        self._clock = context.clock
        self._writer = context.writer
        self._announcer = context.announcer
        self._queue = context.announcer.queue
        self._encoder = context.announcer.encode
        self._source = context.source
        self._cooperator = context.cooperator
        self._catch_up = catch_up if waiting is not None else None
        self._stopped = stopped
        self.waiting = waiting
        self.once = (ListedOnce(context.announcer, context.writer, self.section.reannounce_after,
                                self.section.directory)
                     if self.section.announce_once else None)
        self._record_trouble = Recurring()

    async def announce_once(self, keys: Iterator[bytes], now: float, full: bool) -> bool:
        """
        Announce what was never announced (L{dirobserver.announce.once});
        after a C{full} listing, prune the record.  False when Redis could
        not be asked: the listing is then incomplete (its caller says so),
        and the catch-up lists again.
        """
        once, stopped = self.once, self._stopped
        assert once is not None
        try:
            await self._cooperator.cooperate(once.announce(self._not_waiting(keys), now, stopped)).whenDone()
            if full and not stopped():
                await self._cooperator.cooperate(once.prune(stopped)).whenDone()
        except RecordUnavailable as e:
            why = describe_failure(e.why)
            if self._record_trouble.happened(why, self._clock.seconds()):
                self._log.warn(
                    "[{section}] Cannot read the record {key} of what was announced ({error}); "
                    "listing again later",
                    section=self.section.name, key=self.section.record_key, error=why,
                )
            return False
        trouble = self._record_trouble
        if trouble.cause is not None:
            summary = trouble.summary(self._clock.seconds())
            trouble.ended()
            self._log.info("[{section}] The record {key} can be read again (it could not {summary})",
                           section=self.section.name, key=self.section.record_key, summary=summary)
        return True

    def _caught_up(self) -> None:
        """
        Hand over the events waiting for the source before the table is
        consulted: a file the scan found quiet by its C{mtime} may have been
        closed since, its close still queued (the sources read the kernel
        queue ahead, and a burst makes them catch up for a while); handed
        over, it puts the file in the table, whose timer announces it a
        C{settle} after its close, not the listing now (found by the soak:
        a file announced 38 ms before its C{settle} was up).
        """
        if self._catch_up is not None:
            try:
                self._catch_up()
            except Exception:
                self._log.failure("Reading the events queued before announcing failed")

    def _not_waiting(self, keys: Iterator[bytes]) -> Iterator[bytes]:
        """The paths of C{keys} that do not wait in the table (looked up as they are taken)."""
        waiting = self.waiting
        self._caught_up()
        for i, key in enumerate(keys, 1):
            if i % CHUNK == 0:
                self._caught_up()  # what came while the earlier ones were announced
            raw = key[KEY_WIDTH:]
            if waiting and raw in waiting:
                continue
            yield raw

    def announce(self, keys: Iterator[bytes]) -> Iterator[Any]:
        """Push C{"exists"} events, oldest first, pausing while the writer is full."""
        writer = self._writer
        now = self._clock.seconds()
        push, encode, queue, held = writer.push, self._encoder, self._queue, writer.held
        # Events that say which file they are of look at it (extra_fields).
        exists = self._announcer.exists if self._announcer.facts is not None else None
        source, section = self._source, self.section.name
        # Never drop (see the module docstring): pause at three quarters.
        ceiling = max(1, writer.max_held * 3 // 4)
        # Files not complete yet are the table's to announce.  It changes only
        # while this pauses: look at its size again after each pause.
        waiting = self.waiting
        self._caught_up()
        skip = bool(waiting)
        for i, key in enumerate(keys, 1):
            while held() >= ceiling:
                yield writer.room()
                if self._stopped():
                    return
                self._caught_up()
                skip = bool(waiting)
            raw = key[KEY_WIDTH:]
            if skip and raw in waiting:  # type: ignore[operator]
                continue
            if exists is not None:
                exists(raw, now)
            else:
                push(queue, encode(decode_name(raw), EXISTS, now), source, section, EXISTS, now)
            if i % CHUNK == 0:
                if self._stopped():
                    return
                yield None
                self._caught_up()
                skip = bool(waiting)

