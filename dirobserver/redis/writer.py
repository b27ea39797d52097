"""
The batching Redis writer: the only module that talks to Redis.

Events are held per queue, in the order they were pushed, and delivered in
rounds.  A round sends, for every queue with events, one transaction, in the
queue's shape (L{dirobserver.redis.queue_types}; for a list::

    MULTI / LPUSH queue e1 e2 ... en / INCRBY counter n / EXEC

), all written at once (pipelined); only one round is in flight at a time, so
while Redis answers one round the next one grows (large batches under load,
one round trip per event when traffic is light).  A queue's batch leaves
memory only once its C{EXEC} reply says every command was applied; a batch
whose reply did not come (timeout, lost connection, error reply) stays at the
head of its queue and is sent again: at least once, never a gap, order kept.
One transaction per queue keeps queues independent: a C{WRONGTYPE} on one key
holds back that queue only, and is said once, not at every retry
(L{dirobserver.redis.refusals} judges the replies).

The connection itself (opened, checked, reopened with a capped backoff, a
deadline on every step) is L{dirobserver.redis.connection}'s; every round and every
queue length asked here has its own deadline too (C{timeout} from the
configuration).

For the metrics, each push records one small segment (how many events, their
section, their kind, when they were read), not one record per event; when
Redis acknowledges a batch the segments it covers become plain counters
(L{RedisWriter.delivered_by}, L{RedisWriter.delivery_seconds}).

Memory is bounded by C{max_held}: past it, new events are not held; their
source is remembered and asked to list its directory again once Redis has
taken everything held (the directory is the durable record).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Protocol

import txredisapi
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger

from dirobserver.util import stats
from dirobserver.config.settings import RedisSettings
from dirobserver.redis.connection import RedisConnection, Route
from dirobserver.redis.held_events import HeldQueue
from dirobserver.redis.protocol import RespProtocol
from dirobserver.redis.refusals import Refusals
from dirobserver.redis.sentinel import route_for
from dirobserver.redis.queue_types import LIST, QueueShape

#: Most queues (transactions) in one round.  Every command costs txredisapi a
#: few Deferreds until its reply; 10,000 directories with one event each
#: would otherwise mean 40,000 of them at once.
QUEUES_PER_ROUND = 256

#: Seconds a queue whose events Redis refused (OOM, READONLY, WRONGTYPE)
#: waits before it is tried again; the other queues go on meanwhile.
REFUSED_PAUSE = 1.0


class Relistable(Protocol):
    """A source of events that can announce its files again by a listing."""

    def relist(self) -> None:
        """List the directory again: some of its events were not held."""


class RedisWriter(service.Service):
    """
    Holds events per queue and delivers them to Redis in batches.

    @ivar delivered: events acknowledged by Redis.
    @ivar delivered_by: events acknowledged by Redis per C{(section, event)}.
    @ivar delivery_seconds: time from the read of an event to its
        acknowledgement by Redis (events pushed with a C{read_time}).
    @ivar dropped: events not held because C{max_held} was reached.
    @ivar reconnects: successful connections after the first one.
    """

    _log = Logger()

    def __init__(
        self,
        settings: RedisSettings,
        max_held: int,
        reactor: IReactorTime,
        on_reconnect: Callable[[], None] | None = None,
        *,
        retry_policy: Callable[[int], float] | None = None,
        endpoint_factory: Callable[[], IStreamClientEndpoint] | None = None,
    ) -> None:
        """
        @param reactor: provides C{IReactorTCP}, C{IReactorUNIX} and
            C{IReactorTime}.
        @param on_reconnect: called after every connection but the first.
        @param retry_policy: see L{RedisConnection}.
        @param endpoint_factory: makes the endpoint of each connection
            attempt; by default, the route of C{settings} (its address, or
            the master its Sentinels name) is followed.
        """
        self._reactor = reactor
        self._settings = settings
        self._max_held = max_held
        self._low_water = max(1, max_held // 2)
        #: by name and shape: a queue whose type changed (a reload) keeps
        #: delivering what it held in its old shape
        self._queues: dict[tuple[str, QueueShape], HeldQueue] = {}
        #: the current shape of each queue
        self._shapes: dict[str, QueueShape] = {}
        #: queues with events to send, in turn (a queue sent and still
        #: holding events goes to the back: no queue starves the others)
        self._lined_up: collections.deque[HeldQueue] = collections.deque()
        self._endpoint_factory = endpoint_factory
        self._retry_policy = retry_policy
        self._connection = self._new_connection(settings)
        #: the connected protocol while the connection is up
        self._proto: RespProtocol | None = None
        self._flush_call: Any = None
        self._pauses: list[Any] = []
        self._round: defer.Deferred | None = None
        self._held = 0
        self._overflowed: dict[int, Relistable] = {}
        self._waiting: list[defer.Deferred] = []
        self._drained: list[defer.Deferred] = []
        self._room_waiters: list[defer.Deferred] = []
        #: why Redis refuses the events of some queues now
        self._refusals = Refusals(reactor.seconds, REFUSED_PAUSE)
        self._stopping = False
        self._switched = False
        self._on_reconnect = on_reconnect
        self.delivered = 0
        self.delivered_by: dict[tuple[str, str], int] = {}
        self.delivery_seconds = stats.Histogram(stats.DELIVERY_BUCKETS)
        self.dropped = 0
        self.reconnects = 0

    # -- what the rest of the observer uses ---------------------------------

    def queue(self, name: str, counter: str | None, shape: QueueShape = LIST) -> HeldQueue:
        """
        The handle to push events to queue C{name} (and count in C{counter}).

        @param shape: how the queue is kept in Redis (a list by default).
            Sections that share a queue agree on it (the configuration says
            so); a reload that changes it gets a new handle, while what the
            old one holds is still delivered in the old shape.
        """
        q = self._queues.get((name, shape))
        if q is None:
            q = self._queues[name, shape] = HeldQueue(name, counter, shape)
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
        """
        if self._held >= self._max_held:
            self._drop(1, source)
            return
        q.pending.append(payload)
        self._held += 1
        q.record(1, section, event, read_time)
        if not q.scheduled or self._flush_call is None:
            self._schedule(q)

    def push_many(
        self,
        q: HeldQueue,
        payloads: list[Any],
        source: Relistable | None = None,
        section: str = "",
        event: str = "",
        read_time: float | None = None,
    ) -> None:
        """L{push} for several events of one queue, in order."""
        if not payloads:
            return
        room = self._max_held - self._held
        if len(payloads) > room:
            if room > 0:
                self.push_many(q, payloads[:room], source, section, event, read_time)
            self._drop(len(payloads) - max(room, 0), source)
            return
        q.pending.extend(payloads)
        self._held += len(payloads)
        q.record(len(payloads), section, event, read_time)
        self._schedule(q)

    def _drop(self, n: int, source: Relistable | None) -> None:
        """C{n} events are not held (past C{max_held}): have them listed later."""
        self.dropped += n
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
                max=self._max_held,
            )

    def _schedule(self, q: HeldQueue) -> None:
        """Line C{q} up for the next round, and make sure a round comes."""
        if not q.scheduled:
            q.scheduled = True
            self._lined_up.append(q)
        if self._flush_call is None and self._round is None and self._proto is not None:
            # Everything pushed during this reactor turn goes in one round.
            self._flush_call = self._reactor.callLater(0, self._flush)

    @property
    def max_held(self) -> int:
        """The most events held before falling back to listings."""
        return self._max_held

    def held(self) -> int:
        """How many events are waiting for Redis."""
        return self._held

    def room(self) -> defer.Deferred | None:
        """
        None while there is room for more events; else a Deferred that fires
        once Redis has taken half of what is held (listings wait on it rather
        than overrun C{max_held}).
        """
        if self._held < self._low_water:
            return None
        d: defer.Deferred = defer.Deferred()
        self._room_waiters.append(d)
        return d

    def redis_up(self) -> bool:
        """Whether a connection to Redis is up (connected, handshake done)."""
        return self._proto is not None

    #: the older name of L{redis_up}
    connected = redis_up

    def describe(self) -> str:
        """Where Redis is now, for log lines (the master a Sentinel named, once known)."""
        return self._connection.describe()

    @property
    def problem(self) -> str | None:
        """None while Redis is up; else one line saying why not."""
        return self._connection.problem

    def when_connected(self) -> defer.Deferred:
        """A Deferred that fires once a connection to Redis is up."""
        if self._proto is not None:
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
        if self._proto is None:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        shape = self._shapes.get(name, LIST)
        d = defer.maybeDeferred(shape.length, self._proto, name)
        d.addTimeout(self._settings.timeout, self._reactor)
        return d

    # -- connection ------------------------------------------------------------

    def _new_connection(self, settings: RedisSettings) -> RedisConnection:
        if self._endpoint_factory is not None:
            route = Route(self._reactor, settings, self._endpoint_factory)
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
        self._max_held = max_held
        self._low_water = max(1, max_held // 2)
        if settings == self._settings:
            return
        self._settings = settings
        old, self._connection = self._connection, self._new_connection(settings)
        self._proto = None
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
        self._proto = proto
        if self._connection.connections > 1 or self._switched:
            # Another server (a reload) is a reconnect too: what the old one
            # had is not there, and the listings cover the files present.
            self._switched = False
            self.reconnects += 1
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        self._flush()
        if self.reconnects and self._on_reconnect is not None:
            self._on_reconnect()

    def _disconnected(self) -> None:
        """The connection is lost: the round in flight fails and is resent."""
        self._proto = None

    # -- delivery --------------------------------------------------------------

    def _flush(self) -> None:
        """Send one round: a transaction for every queue with events."""
        self._flush_call = None
        proto = self._proto
        if proto is None or self._round is not None:
            return
        lined_up = self._lined_up
        if not lined_up:
            if not self._held:
                self._after_drain()
            return
        work = [lined_up.popleft() for _ in range(min(len(lined_up), QUEUES_PER_ROUND))]
        replies = []
        proto.cork()  # the whole round leaves in one write
        try:
            for q in work:
                batch = q.next_batch()
                replies.append(q.shape.send(proto, q.name, q.counter, batch, len(batch) - q.overcount))
        except Exception:
            # Not connected any more: what was sent will fail by itself.
            self._log.failure("Sending events to Redis failed")
            proto.transport.abortConnection()
        finally:
            proto.uncork()
        round_ = defer.DeferredList(replies, consumeErrors=True)
        round_.addTimeout(self._settings.timeout, self._reactor)
        round_.addBoth(self._round_done, proto, work)
        self._round = round_

    def _round_done(self, results: Any, proto: RespProtocol, work: list[HeldQueue]) -> None:
        self._round = None
        refused = self._settle(results, proto, work)
        for q in work:
            if q in refused:
                continue  # back in line after a pause, see below
            if q.pending or q.in_flight:
                # More came, or the round failed: to the back of the line, so
                # that no queue starves the others.
                self._lined_up.append(q)
            else:
                q.scheduled = False
        if refused:
            # Errors such as OOM or READONLY last a while: do not spin on
            # them, and do not hold the other queues back either.
            self._pauses.append(
                self._reactor.callLater(REFUSED_PAUSE, self._line_up_again, refused)
            )
        if self._proto is not None and self._flush_call is None:
            self._flush()

    def _line_up_again(self, queues: list[HeldQueue]) -> None:
        self._pauses = [call for call in self._pauses if call.active()]
        self._lined_up.extend(queues)
        if self._proto is not None and self._round is None and self._flush_call is None:
            self._flush()

    def _settle(
        self, results: Any, proto: RespProtocol, work: list[HeldQueue]
    ) -> list[HeldQueue]:
        """Account for one round's replies; return the queues Redis refused."""
        if not isinstance(results, list):
            # The deadline passed: treat the connection as dead, resend later.
            self._log.warn(
                "Redis at {addr} did not answer within {timeout} s; reconnecting",
                addr=self._settings.describe(),
                timeout=self._settings.timeout,
            )
            proto.transport.abortConnection()
            return []
        refused = []
        now = self._reactor.seconds()
        # Fewer results than queues when sending failed half-way: the queues
        # not sent keep their batch and go back in line.
        for q, (ok, reply) in zip(work, results):
            problem = self._refusals.judge(q, ok, reply)
            if problem is None:
                n = q.acknowledged(self.delivered_by, self.delivery_seconds, now)
                self._held -= n
                self.delivered += n
            elif self._proto is proto:
                if problem.startswith("READONLY") and self._connection.not_master(problem):
                    # Following a master that moved: no pause, the batch
                    # goes to the new master as soon as it is connected.
                    self._proto = None
                    continue
                refused.append(q)
                self._refusals.refused(q, problem)
        if self._room_waiters and self._held < self._low_water:
            waiters, self._room_waiters = self._room_waiters, []
            for d in waiters:
                d.callback(None)
        return refused

    def _after_drain(self) -> None:
        """Everything held was delivered: catch up on what was not held."""
        if self._overflowed and not self._stopping:
            sources, self._overflowed = list(self._overflowed.values()), {}
            self._log.info(
                "Redis caught up; listing {n} directories for the events not held",
                n=len(sources),
            )
            for source in sources:
                source.relist()
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
        if self._held and self._proto is not None:
            self._drained.append(d)
            d.addTimeout(self._settings.timeout, self._reactor)
        else:
            d.callback(None)

        def finish(result: Any) -> defer.Deferred:
            if self._held:
                self._log.warn(
                    "Stopping with {held} events not delivered (Redis at {addr} "
                    "unreachable); the listing at the next start announces the "
                    "files still present",
                    held=self._held,
                    addr=self._settings.describe(),
                )
            for call in [self._flush_call, *self._pauses]:
                if call is not None and call.active():
                    call.cancel()
            self._flush_call = None
            self._pauses = []
            self._proto = None
            return self._connection.stop()

        return d.addBoth(finish)
