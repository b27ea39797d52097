"""
Plain counters that the observer's objects keep as they work.

Metrics are read, not pushed: the writer, the monitors and the core service
update these small values on their own paths (an addition, no library call),
and L{dirobserver.ops.metrics} turns them into Prometheus samples only when
someone scrapes.  Nothing here imports C{prometheus_client} or the reactor.
"""

from __future__ import annotations

import bisect

#: Bucket upper bounds (seconds) for the delivery time of an event, from the
#: inotify read to Redis's acknowledgement: sub-millisecond when all is well,
#: seconds to minutes during an outage.
DELIVERY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)

#: Bucket upper bounds (seconds) for the duration of one directory listing.
LISTING_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Histogram:
    """
    Observations counted into fixed buckets, kept as plain numbers.

    @ivar bounds: the upper bounds of the buckets, ascending; an implicit
        last bucket holds everything above the last bound.
    @ivar counts: observations per bucket (not cumulative), one more than
        C{bounds}.
    @ivar total: the sum of all observed values.
    @ivar count: how many observations.
    """

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float, weight: int = 1) -> None:
        """Count C{weight} observations of C{value} (a batch shares one value)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += weight
        self.total += value * weight
        self.count += weight

    def cumulative(self) -> list[tuple[float, int]]:
        """C{(upper bound, observations <= bound)} pairs, C{inf} last."""
        result, running = [], 0
        # One count per bound plus the overflow count under inf: equal lengths.
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            result.append((bound, running))
        return result
