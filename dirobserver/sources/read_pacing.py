"""
When the inotify source reads: as events come, at the linger's tick, or
after a fast stream's nap.

Each read of the inotify descriptor is a wake-up of the process, and each
read's events become a Redis round.  A lone file is read (and sent) at once.
A stream of events is left to gather in the kernel queue between reads:

 - with a C{linger} (L{dirobserver.util.linger}), a read that found events
   less than a linger after the one before stops reading until the
   linger's tick, so every event waits at most the linger;
 - with C{linger = 0}, only a stream faster than one drained read per
   L{STREAM_GAP}, L{STREAM_READS} reads in a row, naps L{STREAM_NAP}: the
   rule from before the linger existed, kept so that C{linger = 0} behaves
   as it did (20,000 files a second at a tenth of a core, for up to 4 ms
   more latency; at 1,000 a second, 1 ms apart, nothing naps).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dirobserver.util.linger import Linger

#: Seconds between two drained reads that make them a fast stream.
STREAM_GAP = 0.0005
#: Fast reads in a row before a stream naps (two files that happened to
#: come close together are not a stream).
STREAM_READS = 4
#: Seconds a fast stream naps with C{linger = 0}.
STREAM_NAP = 0.004


class ReadPacing:
    """
    Decides, after each read that drained the kernel queue, whether the
    source stops reading for a while, and starts it again.
    """

    def __init__(
        self,
        clock: IReactorTime,
        linger: Linger | None,
        stop_reading: Callable[[], None],
        start_reading: Callable[[], None],
    ) -> None:
        """
        @param linger: the daemon's linger (None or disabled: the fast
            stream rule).
        @param stop_reading: takes the source out of the reactor.
        @param start_reading: puts it back (only called while connected).
        """
        self._clock = clock
        self._linger = linger
        self._stop_reading = stop_reading
        self._start_reading = start_reading
        #: out of the reactor until the tick or the end of the nap
        self._napping = False
        #: when a read last found events (a lone file naps for nothing)
        self._found_at = float("-inf")
        #: drained reads in a row, each less than STREAM_GAP after the last
        self._quick = 0
        #: the nap of a fast stream with linger = 0
        self._stream_nap: IDelayedCall | None = None
        #: whether the source is still open (a nap that ends after its
        #: close reads nothing)
        self._open = True

    def drained(self) -> None:
        """A read found events and emptied the queue: nap, or read on."""
        if self._napping:
            return
        linger = self._linger
        now = self._clock.seconds()
        found_before, self._found_at = self._found_at, now
        if linger is not None and linger.enabled:
            if now - found_before >= linger.seconds:
                return
            self._napping = True
            self._stop_reading()
            linger.later(self._wake)
            return
        if now - found_before >= STREAM_GAP:
            self._quick = 0
            return
        self._quick += 1
        if self._quick < STREAM_READS:
            return
        self._napping = True
        self._stop_reading()
        self._stream_nap = self._clock.callLater(STREAM_NAP, self._wake)

    def _wake(self) -> None:
        self._napping = False
        self._stream_nap = None
        # What gathered during the nap is a stream's: the read that follows
        # naps again (the tick's reads are a linger apart, not less).
        self._found_at = self._clock.seconds()
        if self._open:
            self._start_reading()

    def close(self) -> None:
        """The source closed: a tick still due reads nothing, a nap is cancelled."""
        self._open = False
        if self._stream_nap is not None and self._stream_nap.active():
            self._stream_nap.cancel()
        self._stream_nap = None
