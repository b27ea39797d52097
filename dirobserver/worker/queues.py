"""
Taking events from the section's queue so that a crash loses none.

A list (L{ListEvents})::

    BLMOVE queue queue:processing:W RIGHT LEFT block    take (oldest first)
    LREM queue:processing:W 1 event                     acknowledge (filed)
    SET queue:worker:W W PX reclaim-after               the claim key, renewed
    SADD queue:workers W                                so others can find W (renewed too)

The event moves atomically from the queue into the processing list of
worker C{W}, and leaves it only once its file is filed: killed at any
moment, the worker leaves its events in that list.  A worker whose claim
key expired (it stopped renewing it for C{--reclaim-after} seconds) is
dead: any live worker moves its events one by one (C{LMOVE}, atomic each)
into its own processing list and runs them (L{ListEvents.take_over}).

A stream (L{StreamEvents}): a consumer group (C{XGROUP CREATE ... MKSTREAM},
from the stream's start, so that events announced before the first worker
ran are not skipped); C{XREADGROUP ... >} takes, C{XACK} acknowledges, and
C{XAUTOCLAIM} takes over the entries left pending for C{--reclaim-after}
seconds.  A worker keeps the entries it is running from looking idle by
claiming them again for itself (C{XCLAIM ... JUSTID}) as it renews its key.

Either way a command whose reply was lost with the connection may have
taken an event: after such a loss the worker reads its own processing list
(its own pending entries) and adopts what it does not know
(L{ListEvents.adopt}).

An L{Event} holds what the worker needs and what acknowledging needs: the
raw list element (removed by value) or the stream entry's id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import txredisapi

from dirobserver.worker.redis_link import RedisLink


class BadEvent(ValueError):
    """An event the worker cannot use (one line saying why)."""


@dataclass(frozen=True)
class Event:
    """
    One taken event.

    @ivar handle: what acknowledges it: the raw list element, or the stream entry id.
    @ivar directory: the event's C{directory}.
    @ivar filename: the event's C{filename} (C{str}, undecodable bytes as surrogates).
    @ivar taken_over: taken over from a dead worker (its file may be claimed).
    """

    handle: Any
    directory: str
    filename: str
    taken_over: bool = False


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if not isinstance(value, str):
        raise BadEvent(f"not text: {value!r}")
    return value


def from_json(raw: Any, taken_over: bool = False) -> Event:
    """An event of a list (the observer's JSON)."""
    try:
        value = json.loads(raw)
        return Event(raw, _text(value["directory"]), _text(value["filename"]), taken_over)
    except (ValueError, TypeError, KeyError) as e:
        raise BadEvent(f"not an event of the observer ({e.__class__.__name__}: {e})") from None


def from_fields(entry_id: str, fields: list[Any], taken_over: bool = False) -> Event:
    """An event of a stream (its fields as a flat list)."""
    try:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        return Event(entry_id, _text(values["directory"]), _text(values["filename"]), taken_over)
    except (ValueError, TypeError, KeyError) as e:
        raise BadEvent(f"not an event of the observer ({e.__class__.__name__}: {e})") from None


def claim_key(queue: str, worker: str) -> str:
    """The key that says worker C{worker} of C{queue} is alive."""
    return f"{queue}:worker:{worker}"


class _Events:
    """What both queue types share: the claim key."""

    def __init__(self, main: RedisLink, blocking: RedisLink, queue: str, worker: str,
                 reclaim_after: float) -> None:
        self.main = main
        self.blocking = blocking
        self.queue = queue
        self.worker = worker
        self._ttl_ms = max(1, int(reclaim_after * 1000))
        self.bad: list[tuple[Any, str]] = []

    async def renew(self, running: Iterable[Event] = ()) -> None:
        """Say this worker is alive for C{--reclaim-after} more seconds."""
        await self.main.call("SET", claim_key(self.queue, self.worker), self.worker, "PX", self._ttl_ms)

    async def alive(self, worker: str) -> bool:
        """Whether worker C{worker}'s claim key is there."""
        return bool(await self.main.call("EXISTS", claim_key(self.queue, worker)))


class ListEvents(_Events):
    """A list queue (see the module docstring)."""

    kind = "list"

    @property
    def processing(self) -> str:
        return f"{self.queue}:processing:{self.worker}"

    @property
    def registry(self) -> str:
        return f"{self.queue}:workers"

    async def register(self) -> None:
        """The claim key first, then the registry: never seen without a key."""
        await self.renew()

    async def renew(self, running: Iterable[Event] = ()) -> None:
        """
        The claim key, then the registry, at every renewal: a worker taken
        for dead (its renewals refused or cut off for C{--reclaim-after})
        was removed from the registry by the worker that took its events
        over; if it lives on, it must be found again the day it dies, or
        what it takes then is never taken over.
        """
        await super().renew()
        await self.main.call("SADD", self.registry, self.worker)

    async def take(self, block: float) -> Event | None:
        """The oldest event, moved into the processing list; None after C{block} seconds."""
        raw = await self.blocking.call("BLMOVE", self.queue, self.processing, "RIGHT", "LEFT",
                                       f"{block:g}", block=block, retry=False)
        return None if raw is None else self._event(raw)

    def _event(self, raw: Any, taken_over: bool = False) -> Event | None:
        try:
            return from_json(raw, taken_over)
        except BadEvent as e:
            self.bad.append((raw, str(e)))
            return None

    async def ack(self, event: Event) -> None:
        await self.main.call("LREM", self.processing, 1, event.handle)

    async def drop_bad(self) -> list[tuple[Any, str]]:
        """Acknowledge the events that could not be read; they are returned for the log."""
        bad, self.bad = self.bad, []
        for raw, _ in bad:
            await self.main.call("LREM", self.processing, 1, raw)
        return bad

    async def give_back(self, event: Event) -> None:
        """
        Put C{event} back at the head of the queue (a stop): pushed there
        first, then removed from this worker's processing list.  Not one
        C{MULTI}/C{EXEC}: Redis does not undo a transaction's commands when
        one fails as it runs, so a push refused there (a queue key of
        another type) after the removal would lose the event.  In this
        order a refused push leaves the event taken by this worker (taken
        over once its key expires), and a stop between the two leaves it
        in both places: a duplicate, which finds its file claimed or gone.

        @raise txredisapi.ResponseError: Redis refused the push.
        """
        await self.main.call("RPUSH", self.queue, event.handle)
        await self.main.call("LREM", self.processing, 1, event.handle)

    async def take_over(self) -> list[Event]:
        """Move the events of every dead worker into this one's processing list."""
        taken: list[Event] = []
        for other in await self.main.call("SMEMBERS", self.registry) or []:
            if other == self.worker or await self.alive(other):
                continue
            theirs = f"{self.queue}:processing:{other}"
            while True:
                raw = await self.main.call("LMOVE", theirs, self.processing, "RIGHT", "LEFT")
                if raw is None:
                    break
                event = self._event(raw, taken_over=True)
                if event is not None:
                    taken.append(event)
            await self.main.call("SREM", self.registry, other)
        return taken

    async def adopt(self, known: Iterable[Event]) -> list[Event]:
        """The events in this worker's processing list that it does not know of."""
        left = [event.handle for event in known]
        adopted = []
        for raw in await self.main.call("LRANGE", self.processing, 0, -1) or []:
            if raw in left:
                left.remove(raw)
                continue
            event = self._event(raw)
            if event is not None:
                adopted.append(event)
        return adopted

    async def unregister(self) -> bool:
        """
        Stop as a worker: the claim key goes; the registry entry too when
        nothing is left in the processing list (else a live worker takes it
        over at once, the key being gone).

        @return: whether the processing list was empty.
        """
        await self.main.call("DEL", claim_key(self.queue, self.worker))
        if int(await self.main.call("LLEN", self.processing)) == 0:
            await self.main.call("SREM", self.registry, self.worker)
            return True
        return False


class StreamEvents(_Events):
    """A stream queue read by a consumer group (see the module docstring)."""

    kind = "stream"

    def __init__(self, main: RedisLink, blocking: RedisLink, queue: str, worker: str,
                 reclaim_after: float, group: str) -> None:
        super().__init__(main, blocking, queue, worker, reclaim_after)
        self.group = group

    async def register(self) -> None:
        await self.renew()
        try:
            await self.main.call("XGROUP", "CREATE", self.queue, self.group, "0", "MKSTREAM")
        except txredisapi.ResponseError as e:
            if not str(e).startswith("BUSYGROUP"):
                raise

    async def renew(self, running: Iterable[Event] = ()) -> None:
        await super().renew()
        ids = [event.handle for event in running]
        if ids:
            # Entries being run must not look idle to XAUTOCLAIM.
            await self.main.call("XCLAIM", self.queue, self.group, self.worker, 0, *ids, "JUSTID")

    def _entries(self, entries: Any, taken_over: bool = False) -> list[Event]:
        events = []
        for entry_id, fields in entries or []:
            if fields is None:
                self.bad.append((entry_id, "deleted from the stream"))
                continue
            try:
                events.append(from_fields(entry_id, fields, taken_over))
            except BadEvent as e:
                self.bad.append((entry_id, str(e)))
        return events

    async def take(self, block: float) -> Event | None:
        reply = await self.blocking.call(
            "XREADGROUP", "GROUP", self.group, self.worker, "COUNT", 1,
            "BLOCK", max(1, int(block * 1000)), "STREAMS", self.queue, ">",
            block=block, retry=False)
        if not reply:
            return None
        events = self._entries(reply[0][1])
        return events[0] if events else None

    async def ack(self, event: Event) -> None:
        await self.main.call("XACK", self.queue, self.group, event.handle)

    async def drop_bad(self) -> list[tuple[Any, str]]:
        bad, self.bad = self.bad, []
        for entry_id, _ in bad:
            await self.main.call("XACK", self.queue, self.group, entry_id)
        return bad

    async def give_back(self, event: Event) -> None:
        """
        A stream has no "back": the entry stays pending, and another worker
        takes it over after C{--reclaim-after} (this one's key is gone).
        """

    async def take_over(self) -> list[Event]:
        taken: list[Event] = []
        start = "0-0"
        while True:
            reply = await self.main.call("XAUTOCLAIM", self.queue, self.group, self.worker,
                                         self._ttl_ms, start, "COUNT", 100)
            start, entries = reply[0], reply[1]
            taken += self._entries(entries, taken_over=True)
            if start == "0-0":
                return taken

    async def adopt(self, known: Iterable[Event]) -> list[Event]:
        ids = {event.handle for event in known}
        reply = await self.main.call("XREADGROUP", "GROUP", self.group, self.worker, "COUNT", 1000,
                                     "STREAMS", self.queue, "0")
        if not reply:
            return []
        return [event for event in self._entries(reply[0][1]) if event.handle not in ids]

    async def unregister(self) -> bool:
        await self.main.call("DEL", claim_key(self.queue, self.worker))
        return True
