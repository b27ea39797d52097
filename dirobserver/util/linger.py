"""
The linger (C{linger} in the configuration): the one tick at which the work
of a round is gathered.

Sending each file to Redis as it comes costs, per file, a wake-up, a read of
the inotify descriptor, a C{send} and a C{recv}; at 1,000 files a second
that is most of what the observer spends.  Holding a new event for a few
milliseconds lets the ones that follow share all of it.  The parts that would
otherwise wake up for one event each ask L{Linger.later} to be called at the
next tick instead:

 - the inotify source, after a read that found events less than C{seconds}
   after the one before (a stream, not a lone file), stops reading and
   reads again at the tick (the kernel queue gathers meanwhile);
 - the writer, after sending a round while a tick is coming, stops reading
   the connection and takes the reply at that tick (the reply does not hold
   anything up: the next round goes out once it is read, and the events it
   will carry are read at that same tick).

The tick comes at most C{seconds} after the first call asked for it, and
later calls join it rather than put it off: however steady the stream of
events (a listing running, a busy directory), nothing waits longer than
C{seconds} for it.  Cooperative work (listings, scans, tree walks) must not
keep the reactor past the tick either: L{Linger.time_slices} ends its steps
when the tick is due, and keeps them to one chunk while a stream is
gathered.  One timer serves every part, so a round of one tick is
one wake-up.  C{seconds = 0} turns it off: the parts read as events come,
as before.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class Linger:
    """
    Gathers calls to run together at the next tick, at most C{seconds} away.

    @ivar seconds: the longest an event may be held (0: not at all).
        Changed by a reload; the tick already due keeps its time.
    @ivar ticks: how many ticks came (for tests and the benchmark).
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, seconds: float) -> None:
        self._clock = clock
        self.seconds = seconds
        self._due: list[Callable[[], None]] = []
        self._call: IDelayedCall | None = None
        #: when the last tick came (cooperative work keeps its steps short
        #: for a linger after it, see time_slices)
        self._ticked_at = float("-inf")
        self.ticks = 0
        #: a round was handed to the transport since the last step began:
        #: its bytes leave at the reactor's next pass (see time_slices)
        self._sent = False

    @property
    def enabled(self) -> bool:
        """Whether events are held at all (C{seconds > 0})."""
        return self.seconds > 0

    def later(self, call: Callable[[], None]) -> None:
        """
        Call C{call} at the next tick: within C{seconds}, with whatever else
        asked for that tick.  With C{seconds = 0}, on the next reactor turn.
        """
        self._due.append(call)
        if self._call is None:
            self._call = self._clock.callLater(max(self.seconds, 0.0), self._tick)

    def round_sent(self) -> None:
        """
        The writer handed a round to its transport.  Twisted writes it at
        the reactor's next pass, after the cooperative step under way: that
        step ends after its current chunk (see L{time_slices}), so that a
        listing does not hold a round back for a whole step.
        """
        self._sent = True

    def waiting(self) -> bool:
        """Whether a tick is coming (someone asked for it)."""
        return self._call is not None

    def overdue(self) -> bool:
        """Whether a tick is waiting and its time has come."""
        call = self._call
        return call is not None and call.getTime() <= self._clock.seconds()

    def time_slices(self, longest: float) -> Callable[[], Callable[[], bool]]:
        """
        A C{terminationPredicateFactory} for a L{twisted.internet.task.Cooperator}.

        While a stream is gathered (a tick is coming, or came less than a
        linger ago), each step of cooperative work is one chunk: between
        two chunks the reactor reads what the tick asked for, takes the
        reply and sends the round, so a listing delays them by a chunk or
        two at most.  The same holds for the step after a round was handed
        to the transport (L{round_sent}): its bytes leave at the next pass.
        Otherwise a step lasts C{longest} seconds (Twisted's own slice) or
        the linger if shorter, so that a file that comes during a step waits
        about a linger at most, and it ends as soon as a tick is due.
        """
        seconds = self._clock.seconds

        def one_chunk() -> bool:
            return True

        def factory() -> Callable[[], bool]:
            start = seconds()
            if self._sent or self._call is not None or start - self._ticked_at < self.seconds:
                self._sent = False
                return one_chunk
            end = start + (min(longest, self.seconds) if self.enabled else longest)
            return lambda: seconds() >= end or self.overdue() or self._sent

        return factory

    def _tick(self) -> None:
        self._call = None
        self._ticked_at = self._clock.seconds()
        self.ticks += 1
        due, self._due = self._due, []
        for call in due:
            try:
                call()
            except Exception:
                # One part's failure must not keep the others from their tick.
                self._log.failure("A lingering call failed")

    def cancel(self) -> None:
        """Forget every call waiting for the tick (stopping)."""
        self._due = []
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
