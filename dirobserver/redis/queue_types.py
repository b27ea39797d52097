"""
Queue types (list, stream): how a batch of held events becomes Redis commands.

The writer (L{dirobserver.redis.writer}) knows batches, acknowledgements and
resends; it does not know what a queue is in Redis.  A queue type does, in one
place:

  - L{QueueType.send} writes one batch of a queue as one transaction
    (C{MULTI} ... C{EXEC}, pipelined) and returns the C{EXEC} reply, so
    that Redis applies the batch and its counter increment together or not
    at all;
  - L{QueueType.length} asks how many events wait in the queue;
  - L{QueueType.encoder} makes, for one directory, the function that turns
    an event into the item the writer holds until Redis acknowledges it.

What an item is belongs to the shape.  For a list (L{ListQueue}) it is the
event's JSON bytes, made once by L{dirobserver.announce.event.EventEncoder}: the
burst path appends them to a Python list and hands that list to C{LPUSH}
unchanged.  For a stream (L{StreamQueue}) it is the tuple of the event's
four values, already encoded (C{(directory, filename, event, timestamp)}, as
bytes), and L{StreamQueue.send} spreads each tuple into one C{XADD}.
L{queue_type_for} picks a section's shape from its C{queue_type}.

A transaction refused before C{EXEC} (C{OOM}, C{READONLY}: Redis answers the
queued command with the error, then C{EXEC} with C{EXECABORT}) fails with the
first refusal rather than with C{EXECABORT}, so that the writer can tell a
replica (a master that moved: L{dirobserver.redis.sentinel}) from the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import txredisapi
from twisted.internet import defer

from dirobserver.announce.event import EventEncoder, Facts

#: Turns C{(filename, event, timestamp[, facts])} into the item held for a
#: queue (facts: see L{dirobserver.announce.event.Facts}).
Encode = Callable[..., Any]
#: The record part of a transaction (C{announce_once}): the hash's key and
#: the C{(field, value)} entries of the batch's events.
RecordPart = tuple[str, Sequence[tuple[bytes, bytes]]]


class RedisCommands(Protocol):
    """
    What a shape needs of the connection
    (L{dirobserver.redis.protocol.RespProtocol}).
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        """Send one command; the Deferred fires with its reply."""

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> defer.Deferred:
        """Send C{commands} in one write; the Deferred fires with their replies."""


class QueueType(Protocol):
    """How events of one queue are written to and counted in Redis."""

    #: a short name for configuration and log lines (C{"list"}, C{"stream"}):
    #: one per shape, a class attribute
    name: ClassVar[str]

    def encoder(self, directory: str, extra_fields: tuple[str, ...] = ()) -> Encode:
        """
        The function that makes the held item of an event of C{directory}
        (with C{extra_fields}, from the event's facts too).
        """

    def send(
        self, proto: RedisCommands, name: str, counter: str | None, batch: Sequence[Any],
        count: int | None = None, record: RecordPart | None = None,
    ) -> defer.Deferred:
        """
        Write C{batch} (held items, oldest first) to queue C{name}, add
        C{count} (by default its size) to C{counter}, and write the
        C{record} entries of its events (C{HSET}, last), as one transaction.

        @return: the C{EXEC} reply: a list with one reply (or exception)
            per queued command; fails when the transaction did not run.
        """

    def length(self, proto: RedisCommands, name: str) -> defer.Deferred:
        """How many events queue C{name} holds (an C{int})."""


class Transaction:
    """
    Commands between C{MULTI} and C{EXEC}, written at once (pipelined) and
    answered by one Deferred.

    Their own replies (C{QUEUED}) are not waited for: the C{EXEC} reply
    judges them, and the first refusal explains an C{EXECABORT}.
    """

    __slots__ = ("_proto", "_commands")

    def __init__(self, proto: RedisCommands) -> None:
        self._proto = proto
        self._commands: list[Sequence[Any]] = [("MULTI",)]

    def queue(self, *command: Any) -> None:
        """Add one command to the transaction."""
        self._commands.append(command)

    def record(self, record: RecordPart | None) -> None:
        """Add the C{HSET} of a batch's record entries, if any."""
        if record is not None and record[1]:
            key, entries = record
            self._commands.append(("HSET", key, *[part for entry in entries for part in entry]))

    def execute(self) -> defer.Deferred:
        """C{EXEC}: its reply, or the first refusal when Redis discarded the transaction."""
        self._commands.append(("EXEC",))
        return self._proto.pipeline(self._commands).addCallback(_exec_reply)


def _exec_reply(replies: list[Any]) -> Any:
    """The EXEC reply out of a pipelined transaction's replies (see L{Transaction})."""
    reply = replies[-1]
    if isinstance(reply, txredisapi.ResponseError):
        if str(reply).startswith("EXECABORT"):
            # Redis discarded the transaction: say why, with the first refusal.
            for queued in replies[1:-1]:
                if isinstance(queued, txredisapi.ResponseError):
                    raise queued
        raise reply
    return reply


class ListQueue:
    """
    A Redis list: C{LPUSH} of the events' JSON, consumers C{BRPOP} the
    oldest first.

    One batch is::

        MULTI / LPUSH name e1 e2 ... en / INCRBY counter n / EXEC
    """

    name: ClassVar[str] = "list"

    def encoder(self, directory: str, extra_fields: tuple[str, ...] = ()) -> Encode:
        """The JSON bytes of an event (L{dirobserver.announce.event.EventEncoder})."""
        return EventEncoder(directory, extra_fields).encode

    def send(
        self, proto: RedisCommands, name: str, counter: str | None, batch: Sequence[Any],
        count: int | None = None, record: RecordPart | None = None,
    ) -> defer.Deferred:
        """C{MULTI / LPUSH / [INCRBY] / [HSET] / EXEC}, written at once."""
        transaction = Transaction(proto)
        transaction.queue("LPUSH", name, *batch)
        if counter is not None:
            transaction.queue("INCRBY", counter, len(batch) if count is None else count)
        transaction.record(record)
        return transaction.execute()

    def length(self, proto: RedisCommands, name: str) -> defer.Deferred:
        """C{LLEN name}."""
        return proto.execute_command("LLEN", name).addCallback(int)

    def __repr__(self) -> str:
        return "<ListQueue>"


#: The shape of a list queue (the default).
LIST = ListQueue()


def _encoded(text: str) -> bytes:
    """Text as bytes, names that are not UTF-8 included (back to their own bytes)."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class StreamQueue:
    """
    A Redis stream: one C{XADD} per event, read by consumer groups
    (C{XREADGROUP}, C{XACK}).  One batch is::

        MULTI / XADD name [MAXLEN ~ n] * directory d filename f event e
                event_timestamp t   (one per event) / INCRBY counter n / EXEC

    The values are the JSON event's four, as bytes: C{filename} holds the
    name's own bytes (a name that is not UTF-8 too, without JSON's escapes),
    C{event_timestamp} the same decimal text as the JSON.

    @ivar maxlen: C{MAXLEN ~ maxlen} on every C{XADD} (0: no trimming).
    """

    maxlen: int = 0
    name: ClassVar[str] = "stream"

    def encoder(self, directory: str, extra_fields: tuple[str, ...] = ()) -> Encode:
        """
        The tuple of encoded values of an event of C{directory}; with
        C{extra_fields}, followed by their names and values (as flat pairs).
        """
        head = _encoded(directory)
        kinds: dict[str, bytes] = {}
        stamps: dict[float, bytes] = {}

        def encode(filename: str, event: str, timestamp: float,
                   facts: Facts | None = None) -> tuple[bytes, ...]:
            kind = kinds.get(event)
            if kind is None:
                kind = kinds[event] = _encoded(event)
            # Events read together share their timestamp: format it once.
            stamp = stamps.get(timestamp)
            if stamp is None:
                if len(stamps) > 64:
                    stamps.clear()
                stamp = stamps[timestamp] = repr(timestamp).encode()
            if extra_fields and facts is not None:
                return (head, _encoded(filename), kind, stamp, *_stream_extras(extra_fields, facts))
            return (head, _encoded(filename), kind, stamp)

        return encode

    def send(
        self, proto: RedisCommands, name: str, counter: str | None, batch: Sequence[Any],
        count: int | None = None, record: RecordPart | None = None,
    ) -> defer.Deferred:
        """C{MULTI / XADD ... / [INCRBY] / [HSET] / EXEC}, written at once."""
        transaction = Transaction(proto)
        queue = transaction.queue
        trim = ("MAXLEN", "~", str(self.maxlen)) if self.maxlen else ()
        for directory, filename, event, timestamp, *extras in batch:
            queue("XADD", name, *trim, "*", b"directory", directory, b"filename", filename,
                  b"event", event, b"event_timestamp", timestamp, *extras)
        if counter is not None:
            queue("INCRBY", counter, len(batch) if count is None else count)
        transaction.record(record)
        return transaction.execute()

    def length(self, proto: RedisCommands, name: str) -> defer.Deferred:
        """
        The backlog of the slowest consumer group: entries not delivered to
        it yet (its C{lag}) plus entries delivered and not acknowledged
        (C{pending}).  C{XLEN} when the stream has no group (nobody reads
        it yet), and in place of a C{lag} Redis cannot tell (older than 7,
        or after deletions).  0 when the stream does not exist.
        """
        return defer.Deferred.fromCoroutine(_backlog(proto, name))


def _stream_extras(fields: tuple[str, ...], facts: Facts) -> list[bytes]:
    """The C{extra_fields} of a stream entry as flat name/value pairs (text; empty: unknown)."""
    values = dict(zip(("id", "size", "mtime"), facts, strict=True))
    pairs = []
    for field in fields:
        value = values[field]
        pairs += [field.encode(), b"" if value is None else
                  (value.encode() if isinstance(value, str) else repr(value).encode())]
    return pairs


async def _backlog(proto: RedisCommands, name: str) -> int:
    try:
        groups = await proto.execute_command("XINFO", "GROUPS", name)
    except txredisapi.ResponseError as e:
        if "no such key" in str(e).lower():
            return 0
        raise
    length = None
    worst = 0
    for group in groups or [None]:
        info = dict(zip(group[::2], group[1::2], strict=True)) if group else {}
        lag = info.get("lag")
        if lag is None:
            if length is None:
                length = int(await proto.execute_command("XLEN", name))
            lag = length
        worst = max(worst, int(lag) + int(info.get("pending") or 0))
    return worst


def queue_type_for(section: Any) -> QueueType:
    """The shape of a section's queue (its C{queue_type} and C{stream_maxlen})."""
    if section.queue_type == "stream":
        return StreamQueue(section.stream_maxlen)
    return LIST
