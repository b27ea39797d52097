"""
What the writer holds for one queue until Redis acknowledges it.

A L{HeldQueue} keeps the queue's items oldest first: the batch in flight (sent,
not acknowledged yet, resent first after a failure), then the items not sent
yet.  The items are whatever the queue's shape (L{dirobserver.redis.queue_types}) sends:
JSON bytes for a list, a tuple of the event's encoded values for a stream.

A queue of C{announce_once} sections (L{HeldQueue.record_key}: the record's
key) keeps, beside each item, its record entry C{(field, value)}
(L{dirobserver.redis.record}), sent with it in the same transaction.

Beside the items it keeps I{segments} for the metrics: one run
C{[count, section, event, read_time]} per push, merged with the run before
when they agree (a listing pushes its events one by one, all alike).  When
Redis acknowledges a batch, L{HeldQueue.acknowledged} consumes the runs it
covers and adds them to plain counters: the cost is per run, never per event.
"""

from __future__ import annotations

from typing import Any

from dirobserver.redis.queue_types import QueueType
from dirobserver.util.stats import Histogram

#: Most events sent in one batch; bounds the size of a command and of a resend.
BATCH = 10_000


class HeldQueue:
    """
    The events held for one Redis queue (the handle C{RedisWriter.queue}
    returns).

    @ivar name: the queue's key in Redis.
    @ivar counter: the key counting its events, or None.
    @ivar shape: how the queue is kept in Redis.
    @ivar pending: items not sent yet, oldest first.
    @ivar in_flight: the batch sent and not acknowledged yet, or None.
    @ivar segments: runs of held events, oldest first, covering
        C{in_flight + pending}.
    @ivar scheduled: whether the queue is in the writer's line of queues
        with work.
    @ivar overcount: see the constructor.
    """

    __slots__ = ("name", "counter", "shape", "pending", "in_flight", "scheduled", "segments", "overcount",
                 "record_key", "pending_entries", "in_flight_entries")

    def __init__(self, name: str, counter: str | None, shape: QueueType, record: str | None = None) -> None:
        """
        @param record: the key of the record of what was announced
            (C{announce_once}), or None.
        """
        self.name = name
        self.counter = counter
        self.shape = shape
        self.record_key = record
        #: the record entries of C{pending} and C{in_flight}, item by item
        #: (only with a C{record_key})
        self.pending_entries: list[tuple[bytes, bytes]] = []
        self.in_flight_entries: list[tuple[bytes, bytes]] = []
        self.scheduled = False
        self.pending: list[Any] = []
        self.in_flight: list[Any] | None = None
        #: events of the batch in flight that C{counter} counts already:
        #: Redis refused its LPUSH (WRONGTYPE) and applied the INCRBY that
        #: followed it in the transaction (Redis does not roll back)
        self.overcount = 0
        # A list, not a deque: an empty deque is over 600 bytes, and 10,000
        # queues each holding a few events made a burst over 10,000
        # directories take 7 MB more.  Consumed runs are deleted once per
        # acknowledgement (see there).
        self.segments: list[list[Any]] = []

    def held(self) -> int:
        """How many events this queue holds."""
        return len(self.pending) + len(self.in_flight or ())

    def next_batch(self) -> list[Any]:
        """The batch to send now: the unacknowledged one, or the next one."""
        if self.in_flight is None:
            if len(self.pending) <= BATCH:
                self.in_flight, self.pending = self.pending, []
                self.in_flight_entries, self.pending_entries = self.pending_entries, []
            else:
                self.in_flight = self.pending[:BATCH]
                del self.pending[:BATCH]
                if self.record_key is not None:
                    self.in_flight_entries = self.pending_entries[:BATCH]
                    del self.pending_entries[:BATCH]
        return self.in_flight

    def send(self, proto: Any) -> Any:
        """Send the batch in flight (L{next_batch}) as one transaction in the queue's shape."""
        batch = self.next_batch()
        record = None if self.record_key is None else (self.record_key, self.in_flight_entries)
        return self.shape.send(proto, self.name, self.counter, batch, len(batch) - self.overcount,
                               record)

    def record(self, count: int, section: str, event: str, read_time: float | None) -> None:
        """Note C{count} more held events of one section, kind and read."""
        segments = self.segments
        if segments:
            last = segments[-1]
            if last[3] == read_time and last[2] == event and last[1] == section:
                last[0] += count
                return
        segments.append([count, section, event, read_time])

    def acknowledged(
        self, by: dict[tuple[str, str], int], seconds: Histogram, now: float
    ) -> int:
        """
        Redis took the batch in flight: forget it, and count its events per
        C{(section, event)} in C{by} and their delay since their read in
        C{seconds}.

        @return: how many events the batch held.
        """
        n = done = len(self.in_flight or ())
        self.in_flight = None
        self.in_flight_entries = []
        segments = self.segments
        used = 0  # runs wholly consumed
        while n > 0 and used < len(segments):
            segment = segments[used]
            count, section, event, read_time = segment
            if count <= n:
                used += 1
            else:
                count = n
                segment[0] -= n
            n -= count
            key = (section, event)
            by[key] = by.get(key, 0) + count
            if read_time is not None:
                seconds.observe(now - read_time, count)
        # One deletion per batch of up to BATCH events: even a million runs
        # (one event per read while Redis was away) cost milliseconds.
        del segments[:used]
        return done
