"""
Delivery in rounds: the line of queues with events, the round in flight, and
what its replies mean for each queue.

A round sends, for every queue lined up (at most L{QUEUES_PER_ROUND}), one
transaction in the queue's shape (L{dirobserver.redis.queue_types}; for a
list::

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

With a linger (L{dirobserver.util.linger}) whose tick is coming (the
inotify source gathers a stream), the connection is not read while a round
is in flight: its reply is taken at that tick, the one at which the
inotify source reads the events of the next round, so that a round costs
one wake-up rather than one for the events and one for the reply.

With C{redis_wait_replicas} a round ends with a C{WAIT}, and the next round
leaves once it answers: the master is at most one round ahead of its
replicas (L{dirobserver.redis.replica_wait}).

A batch with record entries (C{announce_once}) whose reply never came may
have run all the same: on the next connection, before any round, Redis is
asked whether it did (L{dirobserver.redis.in_doubt}), and a batch that ran is
not sent again.

L{dirobserver.redis.writer} owns the queues and the connection; it lines
queues up here and says when the connection comes and goes (L{Rounds.proto}).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txredisapi import ResponseError

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.held_bound import HeldBound
from dirobserver.redis.held_events import HeldQueue
from dirobserver.redis.in_doubt import InDoubt
from dirobserver.redis.protocol import RespProtocol
from dirobserver.redis.record import HeldRecords
from dirobserver.redis.refusals import Refusals
from dirobserver.redis.replica_wait import ReplicaWait
from dirobserver.util import stats
from dirobserver.util.linger import Linger

#: Most queues (transactions) in one round: 10,000 directories with one
#: event each would otherwise mean 40,000 replies waited for at once.
QUEUES_PER_ROUND = 256

#: Seconds a queue whose events Redis refused (OOM, READONLY, WRONGTYPE)
#: waits before it is tried again; the other queues go on meanwhile.
REFUSED_PAUSE = 1.0


class Rounds:
    """
    The queues lined up for delivery and the round in flight.

    @ivar proto: the connected protocol while the connection is up (set by
        the writer), else None.
    @ivar settings: the Redis settings (the deadline of a round, the address
        for log lines).
    @ivar delivered: events acknowledged by Redis.
    @ivar delivered_by: events acknowledged by Redis per C{(section, event)}.
    @ivar delivery_seconds: time from the read of an event to its
        acknowledgement by Redis.
    @ivar doubts: the batches sent and not answered that a record can
        vouch for (L{dirobserver.redis.in_doubt}).
    @ivar replica_wait: the C{WAIT} that ends each round (C{redis_wait_replicas}).
    """

    _log = Logger()

    def __init__(
        self,
        settings: RedisSettings,
        bound: HeldBound,
        clock: IReactorTime,
        not_master: Callable[[str], bool],
        drained: Callable[[], None],
        linger: Linger | None = None,
        records: HeldRecords | None = None,
    ) -> None:
        """
        @param bound: counts what is held; acknowledged events leave it.
        @param not_master: told of a C{READONLY} refusal; True when the
            connection leaves for the master (no pause then).
        @param drained: called when a round finds nothing held.
        @param linger: when given (and enabled), the reply of a round is
            read at its next tick (see the module docstring).
        @param records: the record entries of the held events: those of
            an acknowledged batch leave it.
        """
        self._records = records if records is not None else HeldRecords()
        self.settings = settings
        self._bound = bound
        self._clock = clock
        self._not_master = not_master
        self._drained = drained
        self._linger = linger
        #: the transport not read until the linger's tick, if any
        self._paused: Any = None
        #: queues with events to send, in turn (a queue sent and still
        #: holding events goes to the back: no queue starves the others)
        self._lined_up: collections.deque[HeldQueue] = collections.deque()
        self._round: defer.Deferred | None = None
        #: the call that sends the next round, once scheduled
        self.flush_call: IDelayedCall | None = None
        self._pauses: list[Any] = []
        #: why Redis refuses the events of some queues now
        self._refusals = Refusals(clock.seconds, REFUSED_PAUSE)
        self.doubts = InDoubt()
        self.replica_wait = ReplicaWait(settings)
        self.proto: RespProtocol | None = None
        self.delivered = 0
        self.delivered_by: dict[tuple[str, str], int] = {}
        self.delivery_seconds = stats.Histogram(stats.DELIVERY_BUCKETS)

    def line_up(self, q: HeldQueue) -> None:
        """Line C{q} up for the next round, and make sure a round comes."""
        if not q.scheduled:
            q.scheduled = True
            self._lined_up.append(q)
        if self.flush_call is None and self._round is None and self.proto is not None:
            # Everything pushed during this reactor turn goes in one round.
            self.flush_call = self._clock.callLater(0, self.flush)

    def cancel(self) -> None:
        """Send no more rounds (stopping): cancel the scheduled ones."""
        for call in [self.flush_call, *self._pauses]:
            if call is not None and call.active():
                call.cancel()
        self.flush_call = None
        self._pauses = []

    def flush(self) -> None:
        """Send one round: a transaction for every queue with events."""
        self.flush_call = None
        proto = self.proto
        if proto is None or self._round is not None:
            return
        if self.doubts:
            # Before anything is sent again: which batches in doubt ran?
            self._round = check = self.doubts.check(proto, self.settings, self._clock, self._acknowledge)
            check.addBoth(self._checked, proto)
            return
        lined_up = self._lined_up
        if not lined_up:
            if not self._bound.held:
                self._drained()
            return
        work = [lined_up.popleft() for _ in range(min(len(lined_up), QUEUES_PER_ROUND))]
        replies = []
        waited = False
        proto.cork()  # the whole round leaves in one write
        try:
            for q in work:
                replies.append(q.send(proto))
            if self.replica_wait.wanted(proto):
                # Last: its reply comes once the replicas have the round.
                replies.append(self.replica_wait.send(proto))
                waited = True
        except Exception:
            # Not connected any more: what was sent will fail by itself.
            self._log.failure("Sending events to Redis failed")
            proto.transport.abortConnection()
        finally:
            proto.uncork()
        linger = self._linger
        if linger is not None and linger.waiting() and self._paused is None:
            # Redis answers within a fraction of a millisecond: reading its
            # reply now would be a wake-up of its own, when a tick is coming
            # anyway (the inotify source naps on it: a stream).  Nothing
            # waits for the reply but the next round, whose events are read
            # at that same tick.  Otherwise (a lone file, a listing) the
            # reply is read as it comes.
            self._paused = proto.transport
            self._paused.pauseProducing()
            linger.later(self._resume)
        elif linger is not None:
            linger.round_sent()
        self._round = round_ = defer.DeferredList(replies, consumeErrors=True)
        round_.addTimeout(self.settings.timeout, self._clock)
        # Set before: replies that failed at once (not connected) fire it now.
        round_.addBoth(self._round_done, proto, work, waited)

    def _resume(self) -> None:
        transport, self._paused = self._paused, None
        if transport is not None:
            # A transport that was closed meanwhile ignores this.
            transport.resumeProducing()

    def _round_done(self, results: Any, proto: RespProtocol, work: list[HeldQueue], waited: bool) -> None:
        self._round = None
        if waited and isinstance(results, list) and not _cancelled(results):
            results, (ok, reply) = results[:-1], results[-1]
            self.replica_wait.answered(ok, reply, proto)
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
                self._clock.callLater(REFUSED_PAUSE, self._line_up_again, refused)
            )
        if self.proto is not None and self.flush_call is None:
            self.flush()

    def _line_up_again(self, queues: list[HeldQueue]) -> None:
        self._pauses = [call for call in self._pauses if call.active()]
        self._lined_up.extend(queues)
        if self.proto is not None and self._round is None and self.flush_call is None:
            self.flush()

    def _settle(
        self, results: Any, proto: RespProtocol, work: list[HeldQueue]
    ) -> list[HeldQueue]:
        """Account for one round's replies; return the queues Redis refused."""
        if not isinstance(results, list) or _cancelled(results):
            # addTimeout cancels the DeferredList, which cancels each reply
            # and then fires with their CancelledErrors as a plain list: a
            # deadline that passed shows as cancelled replies, not a failure.
            # The deadline passed: treat the connection as dead, resend later.
            for q in work:
                self.doubts.add(q, proto)
            self._give_up(proto)
            return []
        refused = []
        now = self._clock.seconds()
        # Fewer results than queues when sending failed half-way: the queues
        # not sent keep their batch and go back in line.
        for q, (ok, reply) in zip(work, results, strict=False):
            if not ok and isinstance(reply, Failure) and not reply.check(ResponseError):
                self.doubts.add(q, proto)  # sent, perhaps, and never answered
            record_reply: Any = None
            recorded = q.record_key is not None and bool(q.in_flight_entries)
            if recorded and ok and isinstance(reply, list) and reply:
                # The HSET is the transaction's last command (queue_types).
                reply, record_reply = reply[:-1], reply[-1]
            problem = self._refusals.judge(q, ok, reply)
            if problem is None:
                if recorded:
                    self._refusals.judge_record(q, record_reply)
                self._acknowledge(q, now)
            else:
                if recorded and record_reply is not None and not isinstance(record_reply, Exception):
                    # The pushes were refused and the record written: take
                    # it back, or a listing would skip files never announced.
                    proto.execute_command("HDEL", q.record_key, *[field for field, _ in q.in_flight_entries]
                                          ).addErrback(lambda _: None)
            if problem is not None and self.proto is proto:
                if problem.startswith("READONLY") and self._not_master(problem):
                    # Following a master that moved: no pause, the batch
                    # goes to the new master as soon as it is connected.
                    self.proto = None
                    continue
                refused.append(q)
                self._refusals.refused(q, problem)
        self._bound.wake()
        return refused

    def _acknowledge(self, q: HeldQueue, now: float | None = None) -> int:
        """Redis has C{q}'s batch in flight: it leaves memory and is counted; how many events."""
        if now is None:
            now = self._clock.seconds()
        if q.record_key is not None:
            self._records.release(q.record_key, q.in_flight_entries)
        n = q.acknowledged(self.delivered_by, self.delivery_seconds, now)
        self._bound.held -= n
        self.delivered += n
        return n

    def _give_up(self, proto: RespProtocol) -> None:
        """No answer within the deadline: drop the connection (what was sent is resent, or checked)."""
        self._log.warn(
            "Redis at {addr} did not answer within {timeout} s; reconnecting",
            addr=self.settings.describe(),
            timeout=self.settings.timeout,
        )
        proto.transport.abortConnection()

    def _checked(self, result: Any, proto: RespProtocol) -> None:
        """Redis said which batches in doubt ran: those are delivered; then the rounds go on."""
        self._round = None
        if isinstance(result, Failure):
            if self.proto is proto:
                self._give_up(proto)  # the doubts stay, for the next connection
            return
        for q in result:  # acknowledged: nothing left to send unless more came
            if not q.pending and q in self._lined_up:
                self._lined_up.remove(q)
                q.scheduled = False
        self._bound.wake()
        if self.proto is proto:
            self.flush()


def _cancelled(results: list[tuple[bool, Any]]) -> bool:
    """Whether a round's replies were cancelled (its deadline passed)."""
    return any(not ok and isinstance(reply, Failure) and reply.check(defer.CancelledError)
               for ok, reply in results)
