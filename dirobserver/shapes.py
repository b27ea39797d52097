"""
Queue shapes: how a batch of held events becomes Redis commands.

The writer (L{dirobserver.writer}) knows batches, acknowledgements and
resends; it does not know what a queue is in Redis.  A shape does, in one
place:

  - L{QueueShape.send} writes one batch of a queue as one transaction
    (C{MULTI} ... C{EXEC}, pipelined) and returns the C{EXEC} reply, so
    that Redis applies the batch and its counter increment together or not
    at all;
  - L{QueueShape.length} asks how many events wait in the queue;
  - L{QueueShape.encoder} makes, for one directory, the function that turns
    an event into the item the writer holds until Redis acknowledges it.

What an item is belongs to the shape.  For a list (L{ListShape}, the only
shape today) it is the event's JSON bytes, made once by
L{dirobserver.events.EventEncoder}: the burst path appends them to a Python
list and hands that list to C{LPUSH} unchanged.  A stream shape
(C{XADD name [MAXLEN ~ n] * directory .. filename .. event .. event_timestamp
..} per event, C{XLEN} for the length) needs the event's fields rather than
JSON text: its encoder would return a compact tuple C{(filename, event,
timestamp)} (the directory is the encoder's own), and its L{send} would spread
each tuple into one C{XADD}.  It goes here, next to L{ListShape}, and the
writer does not change.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from twisted.internet import defer

from .events import EventEncoder

#: Turns C{(filename, event, timestamp)} into the item held for a queue.
Encode = Callable[[str, str, float], Any]


class RedisCommands(Protocol):
    """What a shape needs of the connection: txredisapi's C{execute_command}."""

    def execute_command(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        """Send one command; the Deferred fires with its reply."""


class QueueShape(Protocol):
    """How events of one queue are written to and counted in Redis."""

    #: a short name for configuration and log lines (C{"list"}, C{"stream"})
    name: str

    def encoder(self, directory: str) -> Encode:
        """The function that makes the held item of an event of C{directory}."""

    def send(
        self, proto: RedisCommands, name: str, counter: str | None, batch: Sequence[Any]
    ) -> defer.Deferred:
        """
        Write C{batch} (held items, oldest first) to queue C{name} and add
        its size to C{counter}, as one transaction.

        @return: the C{EXEC} reply: a list with one reply (or exception)
            per queued command; fails when the transaction did not run.
        """

    def length(self, proto: RedisCommands, name: str) -> defer.Deferred:
        """How many events queue C{name} holds (an C{int})."""


def _ignore(failure: Any) -> None:
    """The replies inside a transaction are judged by its C{EXEC} reply."""


class ListShape:
    """
    A Redis list: C{LPUSH} of the events' JSON, consumers C{BRPOP} the
    oldest first.

    One batch is::

        MULTI / LPUSH name e1 e2 ... en / INCRBY counter n / EXEC
    """

    name = "list"

    def encoder(self, directory: str) -> Encode:
        """The JSON bytes of an event (L{dirobserver.events.EventEncoder})."""
        return EventEncoder(directory).encode

    def send(
        self, proto: RedisCommands, name: str, counter: str | None, batch: Sequence[Any]
    ) -> defer.Deferred:
        """C{MULTI / LPUSH / [INCRBY] / EXEC}, written at once."""
        proto.execute_command("MULTI").addErrback(_ignore)
        proto.execute_command("LPUSH", name, *batch).addErrback(_ignore)
        if counter is not None:
            proto.execute_command("INCRBY", counter, len(batch)).addErrback(_ignore)
        return proto.execute_command("EXEC")

    def length(self, proto: RedisCommands, name: str) -> defer.Deferred:
        """C{LLEN name}."""
        return proto.execute_command("LLEN", name).addCallback(int)

    def __repr__(self) -> str:
        return "<ListShape>"


#: The shape of every queue today.
LIST = ListShape()
