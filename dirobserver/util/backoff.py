"""
How to retry something that keeps failing, and how to say so only once.

Two small pieces shared by the connection (L{dirobserver.redis.connection}) and
the writer (L{dirobserver.redis.writer}):

  - L{exponential_backoff} makes a retry policy in the shape of Twisted's
    C{ClientService}: a function of the number of failures so far that
    gives the delay before the next attempt.  The delay doubles, is capped,
    and is jittered I{downwards} only, so the cap is a true bound and many
    observers restarted together do not retry in step.
  - L{Recurring} remembers the cause of a condition that repeats (Redis
    unreachable, a queue refused), so that a log line is written when the
    cause changes, and the line that says it ended can tell how often and
    for how long it happened, instead of one warning per retry.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

#: Delay (seconds) after the first failure.
INITIAL_DELAY = 0.1

#: Longest delay (seconds) between two attempts.
MAX_DELAY = 2.0


def exponential_backoff(
    initial: float = INITIAL_DELAY,
    maximum: float = MAX_DELAY,
    factor: float = 2.0,
    jitter: float = 0.2,
    random: Callable[[], float] = _random.random,
) -> Callable[[int], float]:
    """
    A retry policy: the delay after C{n} consecutive failures (C{n >= 1}).

    The delay is C{initial * factor ** (n - 1)}, capped at C{maximum}, then
    shortened by up to C{jitter} (a fraction): it always lies within
    C{[(1 - jitter) * d, d]} of the capped value C{d}.

    @param random: a source of floats in C{[0, 1)} (a seam for tests).
    """

    def delay(failures: int) -> float:
        # The exponent is bounded so that a very long outage cannot overflow.
        base = min(initial * factor ** min(max(failures - 1, 0), 64), maximum)
        return base * (1.0 - jitter * random())

    return delay


class Recurring:
    """
    One condition that may recur with a cause (a short text).

    L{happened} says whether the cause is new (worth a log line);
    L{ended} says whether something had been going on (worth one line
    saying so, with L{summary}).

    @ivar cause: the current cause, or None while all is well.
    @ivar count: how many times the current cause happened in a row.
    @ivar since: when the current cause first happened (clock seconds).
    """

    __slots__ = ("cause", "count", "since")

    def __init__(self) -> None:
        self.cause: str | None = None
        self.count = 0
        self.since = 0.0

    def happened(self, cause: str, now: float) -> bool:
        """Count one occurrence of C{cause}; True when it differs from the last one."""
        if cause == self.cause:
            self.count += 1
            return False
        self.cause, self.count, self.since = cause, 1, now
        return True

    def summary(self, now: float) -> str:
        """C{"57 times over 56 s"}, for the line that says it ended or changed."""
        times = "once" if self.count == 1 else f"{self.count} times"
        return f"{times} over {now - self.since:.0f} s"

    def ended(self) -> bool:
        """Forget the cause; True when there was one."""
        had = self.cause is not None
        self.cause, self.count = None, 0
        return had


class SharedCauses:
    """
    Recurring causes shared by several members (the queues Redis refuses):
    a cause is news once, however many members it holds back and however
    often they are retried; its end is news once, when no member has it
    any more.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        """@param clock: the current time in seconds."""
        self._clock = clock
        #: member -> its current cause
        self._cause_of: dict[str, str] = {}
        #: cause -> how often, since when, and the members that have it
        self._causes: dict[str, tuple[Recurring, set[str]]] = {}

    def happened(self, member: str, cause: str) -> tuple[bool, str | None]:
        """
        Count one occurrence of C{cause} for C{member}.

        @return: whether the cause is new, and the L{Recurring.summary} of
            the member's previous cause (with it) if that one just ended.
        """
        previous = self._cause_of.get(member)
        if previous == cause:
            self._causes[cause][0].count += 1
            return False, None
        ended = self.cleared(member) if previous is not None else None
        self._cause_of[member] = cause
        known = self._causes.get(cause)
        if known is None:
            recurring = Recurring()
            recurring.happened(cause, self._clock())
            self._causes[cause] = (recurring, {member})
            return True, ended
        known[0].count += 1
        known[1].add(member)
        return False, ended

    def cleared(self, member: str) -> str | None:
        """
        C{member} no longer has its cause.

        @return: C{"57 times over 56 s (cause)"} when no member has that
            cause any more, else None.
        """
        cause = self._cause_of.pop(member, None)
        if cause is None:
            return None
        recurring, members = self._causes[cause]
        members.discard(member)
        if members:
            return None
        del self._causes[cause]
        return f"{recurring.summary(self._clock())} ({cause})"
