"""
Batches in doubt: a transaction sent whose reply never came may have run.

When a round's deadline passes (Redis paused longer than C{timeout}) or its
connection is lost, the writer keeps the batch and sends it again on the
next connection.  But Redis may have received the C{MULTI/EXEC} bytes before
the connection went: resumed, it runs them, and the batch sent again is a
second copy of every event in it.  For a queue without a record
(C{announce_once} off) nothing can tell, and the batch is sent again: at
least once, duplicates possible.

A queue with a record (L{dirobserver.redis.record}) can tell.  Its
transaction ends with the C{HSET} of its events' record entries, and an
entry's value holds the event's timestamp: a record that holds exactly the
value sent means that very transaction ran.  So, on the next connection and
before any round, L{InDoubt.check} asks Redis, in one pipelined write:

 - C{CLIENT KILL ID <id> ADDR <addr>} of the connection the batch was sent
   on (its identity asked with C{CLIENT INFO} when it was made), so that
   Redis cannot still be reading that transaction, a large one, when the
   record is read: killed half-read, the transaction is discarded;
 - per queue in doubt, the C{TYPE} of the queue's key and one C{HMGET} of
   the record fields.

A transaction runs whole or not at all, so one entry whose record holds the
value sent means the batch ran (the same field twice in a batch holds its
last value): that batch is delivered and not sent again; the others are.
But Redis rolls nothing back: with the queue's key of the wrong type, the
C{HSET} ran while the pushes were refused (the rounds take such a record
back when they see the reply, and here it was never seen).  So a batch
counts as delivered only while its queue's key has the queue's type or does
not exist (a list emptied by its consumers).  A record Redis cannot read
(C{WRONGTYPE}) leaves its batch to be sent again.
Without an identity (C{CLIENT INFO} refused: Redis before 6.2, an ACL) or
with C{CLIENT KILL} refused, the C{HMGET} alone decides, which is right
unless Redis was still reading that transaction.

The identity is asked only of connections of a writer with a record, and a
connection to another server (a reload) kills nothing
(L{InDoubt.forget_sender}).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.held_events import HeldQueue
from dirobserver.redis.protocol import RespProtocol
from dirobserver.redis.record import as_bytes

#: A connection as Redis knows it: its client id and its address.
Identity = tuple[str, str]


def parse_client_info(reply: Any) -> Identity | None:
    """C{(id, addr)} out of a C{CLIENT INFO} reply (C{"id=7 addr=... ..."}), or None."""
    if not isinstance(reply, str):
        return None
    fields = dict(part.split("=", 1) for part in reply.split() if "=" in part)
    if fields.get("id") and fields.get("addr"):
        return fields["id"], fields["addr"]
    return None


def batch_ran(entries: Sequence[tuple[bytes, bytes]], recorded: Any) -> bool:
    """
    Whether the transaction of a batch with these record C{entries} ran,
    given C{recorded}, the C{HMGET} reply for their fields (in order): one
    field holding exactly the value sent is enough (see the module
    docstring).  A refused C{HMGET} (an exception) tells nothing: False.
    """
    if not isinstance(recorded, list) or len(recorded) != len(entries):
        return False
    return any(as_bytes(value) == sent for (_, sent), value in zip(entries, recorded, strict=True))


class InDoubt:
    """
    The queues whose batch in flight, with record entries, was sent and not
    answered; and who sent it.

    @ivar wanted: whether connections are asked their identity (the writer
        has a queue with a record).
    """

    _log = Logger()

    def __init__(self) -> None:
        self.wanted = False
        self._queues: list[HeldQueue] = []
        #: the connection whose identity is known, and that identity
        self._known: tuple[RespProtocol, Identity] | None = None
        #: the identity of the connection the batches in doubt were sent on
        self._sender: Identity | None = None

    def __bool__(self) -> bool:
        return bool(self._queues)

    def identify(self, proto: RespProtocol) -> None:
        """A new connection: ask its identity (when L{wanted}; see the module docstring)."""
        self._known = None
        if not self.wanted:
            return

        def known(reply: Any) -> None:
            identity = parse_client_info(reply)
            if identity is not None:
                self._known = (proto, identity)

        proto.execute_command("CLIENT", "INFO").addCallbacks(known, lambda _: None)

    def add(self, q: HeldQueue, proto: RespProtocol) -> None:
        """C{q}'s batch was sent on C{proto} and not answered: in doubt if it carries record entries."""
        if q.record_key is None or not q.in_flight_entries or q in self._queues:
            return
        if not self._queues:
            known = self._known
            self._sender = known[1] if known is not None and known[0] is proto else None
        self._queues.append(q)

    def forget_sender(self) -> None:
        """The next connection goes to another server: its client ids are not ours to kill."""
        self._sender = None

    def check(self, proto: RespProtocol, settings: RedisSettings, clock: IReactorTime,
              acknowledge: Callable[[HeldQueue], int]) -> defer.Deferred:
        """
        Ask Redis on C{proto} which batches in doubt ran (see the module
        docstring), and C{acknowledge} those (it returns how many events a
        batch held).  The Deferred fires with the queues acknowledged, and
        the doubts are over; or fails (no answer within C{settings.timeout},
        connection lost), and they stay for the next connection.
        """
        queues = list(self._queues)
        commands: list[tuple[Any, ...]] = []
        if self._sender is not None:
            client_id, addr = self._sender
            commands.append(("CLIENT", "KILL", "ID", client_id, "ADDR", addr))
        for q in queues:
            commands.append(("TYPE", q.name))
            commands.append(("HMGET", q.record_key, *[field for field, _ in q.in_flight_entries]))
        d = proto.pipeline(commands)
        d.addTimeout(settings.timeout, clock)

        def decided(replies: list[Any]) -> list[HeldQueue]:
            self._queues, self._sender = [], None
            lookups = replies[len(commands) - 2 * len(queues):]
            ran = [q for q, kind, recorded in zip(queues, lookups[::2], lookups[1::2], strict=True)
                   if kind in (q.shape.name, "none") and batch_ran(q.in_flight_entries, recorded)]
            events = 0
            for q in ran:
                q.overcount = 0  # its INCRBY ran with it
                events += acknowledge(q)
            if events:
                self._log.info(
                    "{n} events sent before the connection to Redis at {addr} was lost had reached it "
                    "(their record says so): not sent again",
                    n=events, addr=settings.describe(),
                )
            return ran

        return d.addCallback(decided)
