"""
The linger (L{dirobserver.util.linger}) and the inotify source that naps on
it: a real inotify descriptor and real files, time driven by a C{Clock}.

The bound proved here: no event waits longer than C{linger} from its
creation to its read (after which it goes to Redis in the same turn), at
any rate, while a listing keeps the reactor busy; and C{linger = 0} reads
every event as soon as it is readable.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from twisted.internet import task
from twisted.trial import unittest

from dirobserver.sources.inotify import InotifySource
from dirobserver.sources.read_pacing import STREAM_NAP
from dirobserver.util.linger import Linger

#: A listing's chunk of work, in seconds of the clock (a walk's CHUNK of
#: 2,000 entries takes about this long).
CHUNK_SECONDS = 0.0007


class ClockReactor(task.Clock):
    """A C{Clock} that also keeps the set of readers (what C{epoll} watches)."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set[object] = set()

    def addReader(self, reader: object) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.discard(reader)

    def removeWriter(self, writer: object) -> None:
        pass  # the source never writes


class Sink:
    """Records when each name was read (the read time the source stamps)."""

    def __init__(self) -> None:
        self.read_at: dict[bytes, float] = {}
        self.batches = 0

    def file_events(self, batch, read_time) -> None:
        self.batches += 1
        for name, _mask in batch:
            self.read_at[name] = read_time

    def watch_ended(self, mask: int) -> None:
        pass

    def events_lost(self) -> None:
        pass


class Listing:
    """
    Cooperative work that never ends while the test runs: each unit of it
    takes L{CHUNK_SECONDS} of the clock, and it goes on until the
    cooperator's time slice says stop (as a walk does).
    """

    def __init__(self, clock: ClockReactor) -> None:
        self.clock = clock
        self.chunks = 0

    def run(self):
        while True:
            # Work takes time without letting the reactor run.
            self.clock.rightNow += CHUNK_SECONDS
            self.chunks += 1
            yield None


def test_the_tick_comes_at_most_linger_after_the_first_call_and_later_calls_join_it():
    clock = task.Clock()
    linger = Linger(clock, 0.005)
    asked: list[float] = []
    ran: list[tuple[float, float]] = []

    def ask() -> None:
        at = clock.seconds()
        asked.append(at)
        linger.later(lambda: ran.append((at, clock.seconds())))

    # A call every 0.1 ms for a second: a debounce would never fire.
    step = 0.0001
    for _ in range(10_000):
        ask()
        clock.advance(step)
    for _ in range(60):
        clock.advance(step)
    assert len(ran) == len(asked)
    # The clock moves by steps: a tick due between two runs one step late.
    assert max(done - at for at, done in ran) <= 0.005 + step + 1e-9
    # Calls asked within one linger share one tick.
    assert linger.ticks <= 1.0 / 0.005 + 2
    assert clock.getDelayedCalls() == []


class FailureTests(unittest.TestCase):
    def test_a_failing_call_does_not_keep_the_others_from_their_tick(self):
        clock = task.Clock()
        linger = Linger(clock, 0.005)
        ran: list[str] = []

        def fail() -> None:
            raise RuntimeError("boom")

        linger.later(fail)
        linger.later(lambda: ran.append("after"))
        clock.advance(0.005)
        self.assertEqual(ran, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # And the next tick comes as usual.
        linger.later(lambda: ran.append("next"))
        clock.advance(0.005)
        self.assertEqual(ran, ["after", "next"])


def test_cancel_leaves_no_delayed_call():
    clock = task.Clock()
    linger = Linger(clock, 0.005)
    ran: list[int] = []
    linger.later(lambda: ran.append(1))
    linger.cancel()
    assert clock.getDelayedCalls() == []
    clock.advance(1)
    assert ran == []


def test_time_slices_end_a_step_when_the_tick_is_due():
    clock = task.Clock()
    linger = Linger(clock, 0.005)
    predicate = linger.time_slices(0.01)()
    assert not predicate()
    linger.later(lambda: None)
    clock.rightNow += 0.004
    assert not predicate()
    clock.rightNow += 0.001
    assert predicate()  # the tick is due: back to the reactor
    clock.advance(0)
    fresh = linger.time_slices(0.01)()
    clock.rightNow += 0.005
    assert fresh()  # and never longer than the linger
    linger.seconds = 0
    off = linger.time_slices(0.01)()
    clock.rightNow += 0.009
    assert not off()  # without a linger, Twisted's slice
    clock.rightNow += 0.001
    assert off()


class Run:
    """One source on a clock, a paced creator, a listing running."""

    def __init__(self, linger_seconds: float, rate: float, seconds: float, listing: bool = True) -> None:
        self.root = tempfile.mkdtemp(prefix="dirobserver-linger-")
        self.clock = ClockReactor()
        self.linger = Linger(self.clock, linger_seconds)
        self.source = InotifySource(self.clock, linger=self.linger)  # type: ignore[arg-type]
        self.sink = Sink()
        self.source.add(os.fsencode(self.root), self.sink)
        self.source.startReading()
        self.listing = Listing(self.clock)
        self.cooperator = task.Cooperator(
            terminationPredicateFactory=self.linger.time_slices(0.01),
            scheduler=lambda step: self.clock.callLater(0.00001, step),
        )
        if listing:
            self.cooperator.cooperate(self.listing.run())
        self.created: dict[bytes, float] = {}
        self.rate = rate
        self.seconds = seconds

    def close(self) -> None:
        self.cooperator.stop()
        self.source.close()
        self.linger.cancel()
        shutil.rmtree(self.root, True)

    def poll(self) -> None:
        """What the reactor does after its timers: read if C{epoll} would say so."""
        if self.source in self.clock.readers:
            self.source.doRead()

    def run(self) -> None:
        """
        The reactor's passes, each running the timers due (ticks, the
        listing's steps) and then reading if C{epoll} would say so, with
        the files made on schedule.  A step of the listing takes time: the
        files due meanwhile were made (by another process) during it, and
        are all in the kernel queue when the reactor reads after it.
        """
        interval = 1.0 / self.rate
        count = int(self.rate * self.seconds)
        made = 0
        end = count * interval + self.linger.seconds + 0.02
        while made < count or self.clock.seconds() < end:
            due = made * interval if made < count else end
            calls = [c.getTime() for c in self.clock.getDelayedCalls()]
            nearest = min(calls, default=due)
            if nearest <= due:
                self.clock.advance(max(nearest - self.clock.seconds(), 0))
            else:
                self.clock.advance(max(due - self.clock.seconds(), 0))
            while made < count and made * interval <= self.clock.seconds():
                name = b"f%07d" % made
                with open(os.path.join(self.root, name.decode()), "wb"):
                    pass
                self.created[name] = made * interval
                made += 1
            self.poll()

    def waits(self) -> list[float]:
        return [self.sink.read_at[name] - at for name, at in self.created.items()]


@pytest.mark.parametrize("rate", [100, 1_000, 10_000, 50_000])
def test_no_event_waits_longer_than_linger_at_any_rate_with_a_listing_running(rate):
    run = Run(0.005, rate, seconds=min(0.5, 2_000 / rate))
    try:
        run.run()
        waits = run.waits()
        assert len(waits) == len(run.created)  # every file was read
        # One chunk of the listing's work may be under way when the tick
        # is due: that much, and no more, on top of the linger.
        assert max(waits) <= 0.005 + CHUNK_SECONDS + 1e-9
        assert run.listing.chunks > 0  # the listing did run alongside
        # And the events were gathered: far fewer reads than files.
        if rate >= 1_000:
            assert run.sink.batches < len(waits) / 3
    finally:
        run.close()


@pytest.mark.parametrize("rate", [300, 1_000, 10_000, 50_000])
def test_a_steady_stream_naps_for_the_linger_and_no_longer(rate):
    run = Run(0.005, rate, seconds=min(0.5, 2_000 / rate), listing=False)
    try:
        run.run()
        waits = run.waits()
        assert len(waits) == len(run.created)
        assert max(waits) <= 0.005 + 1e-9
        # One read per tick, about one tick per linger.
        assert run.linger.ticks <= run.seconds / 0.005 + 2
        assert run.sink.batches <= run.linger.ticks + 3
        if rate >= 1_000:
            assert max(waits) > 0.003  # they did gather
    finally:
        run.close()


def test_linger_0_reads_each_event_at_once():
    run = Run(0.0, 1_000, seconds=0.2)
    try:
        run.run()
        waits = run.waits()
        assert len(waits) == len(run.created)
        assert run.linger.ticks == 0  # no nap at all
        # Read as soon as the reactor runs: at once, or after the step of
        # the listing under way (Twisted's time slice, 10 ms, as before).
        assert max(waits) <= 0.01 + CHUNK_SECONDS + 1e-9
        assert max(w for w in waits) > 0.005  # the listing did hold some
    finally:
        run.close()


def test_linger_0_keeps_the_fast_stream_nap_of_before():
    """
    With C{linger = 0}, a stream faster than one read per STREAM_GAP still
    naps STREAM_NAP between reads, as before the linger existed: at 20,000
    files a second the reads gather (far fewer batches than files), and no
    event waits longer than the nap; the linger's tick is never used.
    """
    run = Run(0.0, 20_000, seconds=0.1, listing=False)
    try:
        run.run()
        waits = run.waits()
        assert len(waits) == len(run.created)
        assert run.linger.ticks == 0
        assert run.sink.batches < len(run.created) / 10, run.sink.batches
        assert max(waits) <= STREAM_NAP + 1e-9
        assert max(waits) > STREAM_NAP / 2  # they did gather
    finally:
        run.close()
    assert run.clock.getDelayedCalls() == []  # the nap is cancelled by close


def test_a_lone_file_after_a_quiet_time_is_read_at_once():
    run = Run(0.005, 2, seconds=2)  # one file every half second
    try:
        run.run()
        # Read as soon as the reactor runs: at once, or after the step of
        # the listing under way (at most a linger and a chunk), no nap.
        assert max(run.waits()) <= 0.005 + CHUNK_SECONDS + 1e-9
        assert run.linger.ticks == 0
    finally:
        run.close()


def test_a_round_handed_to_the_transport_ends_the_step_under_way():
    """
    Twisted writes a round at the reactor's next pass: the cooperative step
    under way ends after its chunk, and the next one is one chunk, so that a
    listing does not hold the round back for a whole step; then steps are
    long again.
    """
    clock = task.Clock()
    linger = Linger(clock, 0.005)
    factory = linger.time_slices(0.01)
    step = factory()
    assert not step()  # a step runs on while nothing is waiting
    linger.round_sent()
    assert step()  # ends after its current chunk
    assert factory()()  # the next step is one chunk
    assert not factory()()  # and then steps are long again
    assert clock.getDelayedCalls() == []
