"""
Reading a kernel event queue (inotify's, fanotify's) ahead of handing the
events over.

The kernel queue is small (C{max_queued_events}, 16,384 by default) and what
does not fit is dropped: a queue overflow, which costs a listing of every
directory.  Handing events over costs far more than reading them (a sink may
C{stat} every file: C{announce_once}, C{extra_fields}), so a source that
handed over everything it read before reading again let the queue fill
while it worked: a burst of a million files overflowed it a score of times,
and each overflow's listing slowed the observer further.

L{ReadAhead} separates the two: every turn it first empties the kernel queue
into memory (a read costs a copy, not a parse), then hands over one read's
worth (at most L{READ_SIZE}) and comes back for the next at once, through
the reactor (C{callLater(0)}), so that timers and Redis get their turns in
between.  The kernel queue only overflows once L{LIMIT} bytes wait in memory
(half a million inotify events), and that is handled as before.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from twisted.internet import main
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.sources.overflow_span import queued_bytes
from dirobserver.sources.read_pacing import ReadPacing

#: Bytes per read: what one turn hands over at most.  64 KiB: about 2,000
#: events, a few milliseconds of handing over even with a stat per file,
#: so that the queue is read again long before it can fill.
READ_SIZE = 64 * 1024
#: Bytes of events read and not yet handed over, at most: past it the
#: kernel queue holds the rest (and may overflow).  16 MiB: half a million
#: inotify events of a short name, which a burst of a million files at
#: 170,000 a second with announce_once never reached (9 MiB at most); and
#: a drain (a settle's timer, the stop) hands over at most that much at
#: once, a few seconds of the reactor's time with a stat per file.
LIMIT = 16 * 1024 * 1024


class ReadAhead:
    """
    The reading of one source's descriptor: L{turn} when the reactor says
    it is readable, L{behind} while handing over, L{drain} when a timer
    needs the events waiting (and when stopping).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        descriptor: int,
        what: str,
        hand_over: Callable[[bytes], None],
        lost: Callable[[Failure], None],
        pacing: ReadPacing | None = None,
        limit: int = LIMIT,
        read_size: int = READ_SIZE,
    ) -> None:
        """
        @param what: the kind of queue, for the log (C{"inotify"}).
        @param hand_over: parses one read and hands its events over.
        @param lost: the descriptor failed or ended while reading outside
            the reactor's C{doRead} (the source closes on it).
        @param pacing: told when a turn emptied the kernel queue and
            handed over everything (a stream may then nap).
        @param limit: bytes held at most (L{LIMIT}).
        @param read_size: bytes per read (L{READ_SIZE}).
        """
        self._clock = clock
        self._descriptor = descriptor
        self._what = what
        self._hand_over = hand_over
        self._lost = lost
        self._pacing = pacing
        self._limit = limit
        self._read_size = read_size
        self._reads: deque[bytes] = deque()
        #: bytes in C{_reads}
        self._held = 0
        #: whether the last fill emptied the kernel queue
        self._emptied = False
        self._next: IDelayedCall | None = None
        #: why the descriptor is done, once a read said so: it is not read
        #: again (a drain that met a read error would have the reactor's
        #: next doRead meet it, and log it, a second time)
        self._done: Exception | None = None

    @property
    def held(self) -> int:
        """Bytes read and not handed over yet."""
        return self._held

    def turn(self) -> Exception | None:
        """
        Read what the kernel holds (up to the limit), hand over one read.
        The result is C{doRead}'s: None, or why the descriptor is done.
        """
        why = self._fill()
        if why is not None:
            self._hand_over_all()  # what was read is not lost with the descriptor
            return why
        handed = self._hand_over_one()
        if self._reads:
            if self._next is None:
                self._next = self._clock.callLater(0, self._again)
        elif handed and self._emptied and self._pacing is not None:
            # Events were found, and none are left: a stream may nap now.
            self._pacing.drained()
        return None

    def _again(self) -> None:
        self._next = None
        if self._descriptor < 0:
            return
        why = self.turn()
        if why is not None:
            self._lost(Failure(why))

    def behind(self) -> int:
        """Bytes of events after the read in hand: held here, and still in the kernel queue."""
        return self._held + queued_bytes(self._descriptor)

    def drain(self) -> None:
        """
        Hand over now every event waiting when called, read or still in the
        kernel queue (a sink about to act on a timer asks first; so does
        the stop).  The queue is read again between hand-overs, so that it
        does not overflow meanwhile; what comes after the call waits for the
        next turn, so a writer that keeps writing cannot hold the reactor.
        """
        if self._descriptor < 0:
            return
        owed = self.behind()
        while owed > 0 and self._descriptor >= 0:
            if self._fill() is not None:
                self._hand_over_all()  # the descriptor is done: doRead says so next
                return
            if not self._reads:
                return
            owed -= len(self._reads[0])
            self._hand_over_one()

    def close(self) -> None:
        """The descriptor is closing: nothing more is read or handed over."""
        self._descriptor = -1
        self._reads.clear()
        self._held = 0
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None

    def _fill(self) -> Exception | None:
        """Read until the kernel queue is empty or the limit reached; why the descriptor is done, if it is."""
        self._emptied = False
        if self._done is not None:
            return self._done
        while self._held < self._limit:
            try:
                data = os.read(self._descriptor, self._read_size)
            except BlockingIOError:
                self._emptied = True
                return None
            except OSError as e:
                self._log.error("Reading {what} events failed: {error}", what=self._what, error=e)
                self._done = main.CONNECTION_LOST
                return self._done
            if not data:
                self._done = main.CONNECTION_DONE
                return self._done
            self._reads.append(data)
            self._held += len(data)
            if len(data) < self._read_size // 2:
                # A read returns whole events only: a short one emptied the queue.
                self._emptied = True
                return None
        return None

    def _hand_over_one(self) -> bool:
        """Hand over the oldest read held; false if none was."""
        if not self._reads:
            return False
        data = self._reads.popleft()
        self._held -= len(data)
        self._hand_over(data)
        return True

    def _hand_over_all(self) -> None:
        while self._reads and self._descriptor >= 0:
            self._hand_over_one()
