"""
What Redis made of each queue's transaction, and what is said of its
refusals.

The writer sends each queue's batch as one transaction (L{dirobserver.redis.queue_types}):
its pushes, then the counter's C{INCRBY}.  Redis runs every command of an
C{EXEC} and rolls none back, so a refusal of one command (C{WRONGTYPE} on one
key) leaves the others applied:

  - the pushes refused, the C{INCRBY} applied: the batch is kept and sent
    again, and its resend adds to the counter only what it has not counted
    yet (L{dirobserver.redis.held_events.HeldQueue.overcount});
  - the pushes applied, the C{INCRBY} refused: the events are in the queue,
    so the batch is delivered (sent again, it would be pushed once more every
    second), and the queue's next C{INCRBY} adds what the counter missed.

A queue of C{announce_once} sections ends its transaction with the C{HSET}
of its events' record entries (L{dirobserver.redis.record}); its reply is
judged apart (L{Refusals.judge_record}).  A record refused (C{WRONGTYPE} on
the record's key) does not hold the events back: they are delivered, their
files merely not recorded, so a listing announces them again (a duplicate,
never a loss); the next transactions try the record again.  A record
written while the pushes were refused is taken back (C{HDEL}, by the
rounds) so that it never says announced of an event Redis does not have.

A refusal is said once per cause, however many queues it holds back and
however often they are retried; its end once, with how long it lasted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from dirobserver.redis.attempt import describe_failure
from dirobserver.redis.held_events import HeldQueue
from dirobserver.util.backoff import SharedCauses


class Refusals:
    """Judges the C{EXEC} replies of the writer's rounds (see the module docstring)."""

    _log = Logger()

    def __init__(self, clock: Callable[[], float], pause: float) -> None:
        """
        @param clock: the current time in seconds.
        @param pause: how long the writer waits before sending a refused
            batch again (for the log line).
        """
        self._pause = pause
        self._queues = SharedCauses(clock)
        self._counters = SharedCauses(clock)
        self._records = SharedCauses(clock)

    def judge(self, q: HeldQueue, ok: bool, reply: Any) -> str | None:
        """
        The reply to C{q}'s batch in flight (C{ok} and C{reply} as a
        C{DeferredList} gives them): None when its events are in the queue,
        else why not.  Keeps C{q.overcount} true.
        """
        problem = _exec_problem(ok, reply)
        pushed, counted = (True, True) if problem is None else _applied(ok, reply, q.counter)
        if q.counter is not None and counted:
            self._counter_accepted(q.counter)
        if not pushed:
            if counted:
                q.overcount = len(q.in_flight or ())
            return problem
        if q.counter is not None and not counted:
            self._counter_refused(q, str(reply[-1]))
            q.overcount -= len(q.in_flight or ())
        else:
            q.overcount = 0
        ended = self._queues.cleared(q.name)
        if ended:
            self._log.info("Redis accepts events for queue {queue} again; it refused them {ended}",
                           queue=q.name, ended=ended)
        return None

    def judge_record(self, q: HeldQueue, reply: Any) -> bool:
        """
        The reply to the C{HSET} of C{q}'s batch, whose events were
        delivered: whether the record was written; a refusal is said once
        while it lasts, its end once.
        """
        key = str(q.record_key)
        if isinstance(reply, Exception):
            new, before = self._records.happened(key, str(reply))
            if new:
                self._log.warn(
                    "Redis refused the record {key} of what queue {queue} announced: {problem}; "
                    "the events are delivered, their files not recorded (a listing announces them "
                    "again), and the record is tried again with every batch (said once while this "
                    "lasts){before}",
                    key=key, queue=q.name, problem=reply,
                    before=f"; before, it refused it {before}" if before else "",
                )
            return False
        ended = self._records.cleared(key)
        if ended:
            self._log.info("Redis takes the record {key} again; it refused it {ended}", key=key, ended=ended)
        return True

    def refused(self, q: HeldQueue, problem: str) -> None:
        """The writer keeps C{q}'s batch and sends it again after its pause: say so once per cause."""
        new, before = self._queues.happened(q.name, problem)
        if new:
            self._log.warn(
                "Redis refused events for queue {queue}: {problem}; they are kept "
                "and sent again every {pause} s (said once while this lasts){before}",
                queue=q.name,
                problem=problem,
                pause=self._pause,
                before=f"; before, it refused them {before}" if before else "",
            )

    def _counter_refused(self, q: HeldQueue, problem: str) -> None:
        new, before = self._counters.happened(str(q.counter), problem)
        if new:
            self._log.warn(
                "Redis refused to count events of queue {queue} in {counter}: {problem}; "
                "the events are delivered, and the counter is given what it missed once "
                "Redis takes it (said once while this lasts){before}",
                queue=q.name, counter=q.counter, problem=problem,
                before=f"; before, it refused {before}" if before else "",
            )

    def _counter_accepted(self, counter: str) -> None:
        ended = self._counters.cleared(counter)
        if ended:
            self._log.info("Redis counts events in {counter} again; it refused {ended}",
                           counter=counter, ended=ended)


def _exec_problem(ok: bool, reply: Any) -> str | None:
    """What went wrong with one transaction's EXEC reply, or None."""
    if not ok:
        return describe_failure(reply)
    if not isinstance(reply, list):
        return f"unexpected reply {reply!r}"
    for item in reply:
        if isinstance(item, Exception):
            return str(item)
    return None


def _applied(ok: bool, reply: Any, counter: str | None) -> tuple[bool, bool]:
    """
    Of a transaction Redis refused (see L{_exec_problem}): whether its pushes
    and whether its counter's C{INCRBY} (the last command, if C{counter})
    were applied.
    """
    if not ok or not isinstance(reply, list) or not reply:
        return False, False  # the transaction did not run (EXECABORT, no reply)
    pushes = reply[:-1] if counter is not None else reply
    pushed = not any(isinstance(item, Exception) for item in pushes)
    counted = counter is not None and not isinstance(reply[-1], Exception)
    return pushed, counted
