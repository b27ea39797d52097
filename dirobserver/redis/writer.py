"""
The batching Redis writer: the only module that talks to Redis.

Events are held per queue (L{dirobserver.redis.held_events}), in the order
they were pushed, and delivered in rounds (L{dirobserver.redis.rounds}): one
transaction per queue, all written at once, one round in flight at a time; a
batch leaves memory only once Redis acknowledged it.

The connection itself (opened, checked, reopened with a capped backoff, a
deadline on every step) is L{dirobserver.redis.connection}'s; every round and every
queue length asked here has its own deadline too (C{timeout} from the
configuration).

For the metrics, each push records one small segment (how many events, their
section, their kind, when they were read), not one record per event; when
Redis acknowledges a batch the segments it covers become plain counters
(L{RedisWriter.delivered_by}, L{RedisWriter.delivery_seconds}).

Memory is bounded by C{max_held} (L{dirobserver.redis.held_bound}): past
it, new events are not held; their source is asked to list its directory
again once Redis has taken everything held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.connection import RedisConnection, Route
from dirobserver.redis.held_bound import HeldBound, Relistable
from dirobserver.redis.held_events import HeldQueue
from dirobserver.redis.protocol import RespProtocol
from dirobserver.redis.queue_types import LIST, QueueType
from dirobserver.redis.record import HeldRecords
from dirobserver.redis.rounds import Rounds
from dirobserver.redis.sentinel import route_for
from dirobserver.util.linger import Linger
from dirobserver.util.reactor import IDaemonReactor


class RedisWriter(service.Service):
    """
    Holds events per queue and delivers them to Redis in batches.

    @ivar delivered: events acknowledged by Redis.
    @ivar delivered_by: events acknowledged by Redis per C{(section, event)}.
    @ivar delivery_seconds: time from the read of an event to its
        acknowledgement by Redis (events pushed with a C{read_time}).
    @ivar dropped: events not held because C{max_held} was reached.
    @ivar reconnects: successful connections after the first one.
    @ivar linger: the daemon's L{Linger} (None: none), shared with the
        inotify source so that one tick gathers a whole round.
    """

    _log = Logger()

    def __init__(
        self,
        settings: RedisSettings,
        max_held: int,
        reactor: IDaemonReactor,
        on_reconnect: Callable[[], None] | None = None,
        *,
        retry_policy: Callable[[int], float] | None = None,
        endpoint_factory: Callable[[], IStreamClientEndpoint] | None = None,
        linger: Linger | None = None,
    ) -> None:
        """
        @param reactor: the daemon's (connections and timers).
        @param on_reconnect: called after every connection but the first.
        @param retry_policy: see L{RedisConnection}.
        @param endpoint_factory: makes the endpoint of each connection
            attempt; by default, the route of C{settings} (its address, or
            the master its Sentinels name) is followed.
        @param linger: the daemon's (see L{dirobserver.util.linger}): when
            given, the reply of a round is read at its next tick.
        """
        self._reactor = reactor
        self._settings = settings
        #: the daemon's linger, for the sources that feed this writer
        self.linger = linger
        #: how many events are held, against max_held
        self._bound = HeldBound(max_held)
        #: the record entries of the events held (announce_once)
        self.records = HeldRecords()
        #: by name, shape and record: a queue whose type changed (a reload)
        #: keeps delivering what it held in its old shape
        self._queues: dict[tuple[str, QueueType, str | None], HeldQueue] = {}
        #: the current shape of each queue
        self._shapes: dict[str, QueueType] = {}
        self._endpoint_factory = endpoint_factory
        self._retry_policy = retry_policy
        self._connection = self._new_connection(settings)
        #: the line of queues and the round in flight (and, in its
        #: C{proto}, the connected protocol while the connection is up)
        self._rounds = Rounds(
            settings, self._bound, reactor,
            lambda problem: self._connection.not_master(problem), self._after_drain,
            linger, self.records,
        )
        self._waiting: list[defer.Deferred] = []
        self._drained: list[defer.Deferred] = []
        self._stopping = False
        self._switched = False
        self._on_reconnect = on_reconnect
        self.delivered_by = self._rounds.delivered_by
        self.delivery_seconds = self._rounds.delivery_seconds
        self.dropped = 0
        self.reconnects = 0

    # -- what the rest of the observer uses ---------------------------------

    def queue(
        self, name: str, counter: str | None, shape: QueueType = LIST, record: str | None = None,
    ) -> HeldQueue:
        """
        The handle to push events to queue C{name} (and count in C{counter}).

        @param shape: how the queue is kept in Redis (a list by default).
            Sections that share a queue agree on it (the configuration says
            so); a reload that changes it gets a new handle, while what the
            old one holds is still delivered in the old shape.
        @param record: the key of the record of what was announced
            (C{announce_once}, see L{dirobserver.redis.record}): the events
            pushed to this handle carry their record entries.
        """
        q = self._queues.get((name, shape, record))
        if record is not None:
            self._rounds.doubts.wanted = True
        if q is None:
            q = self._queues[name, shape, record] = HeldQueue(name, counter, shape, record)
        elif counter is not None and q.counter is None:
            q.counter = counter
        self._shapes[name] = shape
        return q

    def push(
        self,
        q: HeldQueue,
        payload: Any,
        source: Relistable | None = None,
        section: str = "",
        event: str = "",
        read_time: float | None = None,
        entry: tuple[bytes, bytes] | None = None,
    ) -> None:
        """
        Hold one event for delivery, in order, to its queue.

        Past C{max_held} held events the event is not held; C{source} is
        asked to list its directory again once Redis has caught up.

        @param payload: the event as the queue's shape holds it (JSON bytes
            for a list).
        @param section: the event's section, for L{delivered_by}.
        @param event: its kind (C{"created"}, C{"exists"}), likewise.
        @param read_time: the reactor's C{seconds()} when it was read, for
            L{delivery_seconds}.
        @param entry: its record entry C{(field, value)}, for a queue with a
            record (required there).
        """
        bound = self._bound
        if bound.held >= bound.max_held:
            self._drop(1, source)
            return
        if q.record_key is not None:
            assert entry is not None
            q.pending_entries.append(entry)
            self.records.hold(q.record_key, (entry,))
        q.pending.append(payload)
        bound.held += 1
        q.record(1, section, event, read_time)
        if not q.scheduled or self._rounds.flush_call is None:
            self._rounds.line_up(q)

    def push_many(
        self,
        q: HeldQueue,
        payloads: list[Any],
        source: Relistable | None = None,
        section: str = "",
        event: str = "",
        read_time: float | None = None,
        entries: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """L{push} for several events of one queue, in order (C{entries}: theirs)."""
        if not payloads:
            return
        room = self._bound.max_held - self._bound.held
        if len(payloads) > room:
            if room > 0:
                self.push_many(q, payloads[:room], source, section, event, read_time,
                               None if entries is None else entries[:room])
            self._drop(len(payloads) - max(room, 0), source)
            return
        if q.record_key is not None:
            assert entries is not None and len(entries) == len(payloads)
            q.pending_entries.extend(entries)
            self.records.hold(q.record_key, entries)
        q.pending.extend(payloads)
        self._bound.held += len(payloads)
        q.record(len(payloads), section, event, read_time)
        self._rounds.line_up(q)

    def _drop(self, n: int, source: Relistable | None) -> None:
        """C{n} events are not held (past C{max_held}): have them listed later."""
        self.dropped += n
        self._bound.overflowed(source)

    @property
    def delivered(self) -> int:
        """Events acknowledged by Redis."""
        return self._rounds.delivered

    @property
    def replica_waits_short(self) -> int:
        """Rounds whose C{WAIT} ended with fewer replicas than C{redis_wait_replicas}."""
        return self._rounds.replica_wait.short

    @property
    def max_held(self) -> int:
        """The most events held before falling back to listings."""
        return self._bound.max_held

    def held(self) -> int:
        """How many events are waiting for Redis."""
        return self._bound.held

    def room(self) -> defer.Deferred | None:
        """
        None while there is room for more events; else a Deferred that fires
        once Redis has taken half of what is held (listings wait on it rather
        than overrun C{max_held}).
        """
        return self._bound.room()

    def redis_up(self) -> bool:
        """Whether a connection to Redis is up (connected, handshake done)."""
        return self._rounds.proto is not None

    def describe(self) -> str:
        """Where Redis is now, for log lines (the master a Sentinel named, once known)."""
        return self._connection.describe()

    @property
    def problem(self) -> str | None:
        """None while Redis is up; else one line saying why not."""
        return self._connection.problem

    def when_connected(self) -> defer.Deferred:
        """A Deferred that fires once a connection to Redis is up."""
        if self._rounds.proto is not None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return d

    def queue_length(self, name: str) -> defer.Deferred:
        """
        How many events queue C{name} holds in Redis (C{LLEN} for a list,
        the backlog of the slowest consumer group for a stream: see
        L{dirobserver.redis.queue_types}), with the deadline; fails when Redis is
        unreachable.
        """
        if self._rounds.proto is None:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        shape = self._shapes.get(name, LIST)
        d = defer.maybeDeferred(shape.length, self._rounds.proto, name)
        d.addTimeout(self._settings.timeout, self._reactor)
        return d

    def command(self, *args: Any) -> defer.Deferred:
        """
        One command on the writer's connection, with the deadline; fails
        when Redis is unreachable.  On the connection of the rounds, so that
        it sees every transaction sent before it (the records' lookups rely
        on it: L{dirobserver.announce.once}).
        """
        if self._rounds.proto is None:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        d = self._rounds.proto.execute_command(*args)
        d.addTimeout(self._settings.timeout, self._reactor)
        return d

    # -- connection ------------------------------------------------------------

    def _new_connection(self, settings: RedisSettings) -> RedisConnection:
        if self._endpoint_factory is not None:
            route = Route(settings, self._endpoint_factory)
        else:
            route = route_for(self._reactor, settings)
        return RedisConnection(
            settings,
            self._connected,
            self._disconnected,
            self.held,
            clock=self._reactor,
            route=route,
            retry_policy=self._retry_policy,
        )

    def reconfigure(self, settings: RedisSettings, max_held: int) -> None:
        """
        Use new settings (a reload).  A changed address, password, database,
        timeout, Sentinel or TLS setting closes the connection and opens one
        to the new server;
        every event held, the batch in flight included, is sent there.
        """
        self._bound.set_max(max_held)
        if settings == self._settings:
            return
        self._settings = self._rounds.settings = settings
        old, self._connection = self._connection, self._new_connection(settings)
        self._rounds.proto = None
        self._rounds.doubts.forget_sender()
        self._switched = True
        old.stop()
        if self.running:
            self._connection.start()

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._connection.start()

    def _connected(self, proto: RespProtocol) -> None:
        """The connection is up: wake the waiters, send what is held."""
        self._rounds.proto = proto
        self._rounds.doubts.identify(proto)
        if self._connection.connections > 1 or self._switched:
            # Another server (a reload) is a reconnect too: what the old one
            # had is not there, and the listings cover the files present.
            self._switched = False
            self.reconnects += 1
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        self._rounds.flush()
        if self.reconnects and self._on_reconnect is not None:
            self._on_reconnect()

    def _disconnected(self) -> None:
        """The connection is lost: the round in flight fails and is resent."""
        self._rounds.proto = None

    # -- delivery ------------------------------------------------------------

    def _after_drain(self) -> None:
        """Everything held was delivered: catch up on what was not held."""
        if not self._stopping:
            self._bound.relist_overflowed()
        self._fire_drained()

    def _fire_drained(self) -> None:
        drained, self._drained = self._drained, []
        for d in drained:
            d.callback(None)

    # -- stopping --------------------------------------------------------------

    def stopService(self) -> defer.Deferred:
        """
        Deliver what is held, for at most C{timeout} seconds, then disconnect.
        """
        super().stopService()
        self._stopping = True
        d: defer.Deferred = defer.Deferred()
        if self._bound.held and self._rounds.proto is not None:
            self._drained.append(d)
            d.addTimeout(self._settings.timeout, self._reactor)
        else:
            d.callback(None)

        def finish(result: Any) -> defer.Deferred:
            if self._bound.held:
                self._log.warn(
                    "Stopping with {held} events not delivered (Redis at {addr} "
                    "unreachable); the listing at the next start announces the "
                    "files still present",
                    held=self._bound.held,
                    addr=self._settings.describe(),
                )
            self._rounds.cancel()
            self._rounds.proto = None
            return self._connection.stop()

        return d.addBoth(finish)
