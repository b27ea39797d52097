"""
Reading a kernel queue ahead of handing its events over
(L{dirobserver.sources.read_ahead}): on a pipe, whose reads and C{FIONREAD}
behave as an event queue's, and on a real inotify queue.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from twisted.internet import main
from twisted.internet.task import Clock

from dirobserver.sources.inotify import InotifySource
from dirobserver.sources.read_ahead import ReadAhead
from tests.test_linger import ClockReactor


class Pacing:
    """Counts the turns that emptied the queue and handed everything over."""

    def __init__(self) -> None:
        self.drained = 0

    def drained_(self) -> None:
        self.drained += 1


#: Bytes per read on the pipe (which holds 64 KiB).
READ_SIZE = 4096


class Rig:
    """A pipe read ahead on a clock; what is handed over, and when it was lost."""

    def __init__(self, limit: int) -> None:
        self.clock = Clock()
        self.out, self.into = os.pipe()
        os.set_blocking(self.out, False)
        self.handed: list[bytes] = []
        self.behind_at_hand: list[int] = []
        self.lost: list[object] = []
        self.pacing = Pacing()
        pacing = type("P", (), {"drained": self.pacing.drained_})()
        self.reader = ReadAhead(self.clock, self.out, "test", self._hand, self.lost.append,
                                pacing, limit=limit, read_size=READ_SIZE)  # type: ignore[arg-type]

    def _hand(self, data: bytes) -> None:
        self.handed.append(data)
        self.behind_at_hand.append(self.reader.behind())

    def write(self, size: int) -> None:
        os.set_blocking(self.into, False)
        view = b"x" * size
        while view:
            view = view[os.write(self.into, view):]

    def close(self) -> None:
        self.reader.close()
        for fd in (self.out, self.into):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def rig():
    made = Rig(limit=4 * READ_SIZE)
    yield made
    made.close()


def test_a_turn_reads_everything_queued_and_hands_over_one_read(rig):
    # A pipe holds 64 KiB by default: grow it to hold several reads.
    rig.write(3 * READ_SIZE)
    assert rig.reader.turn() is None
    assert [len(d) for d in rig.handed] == [READ_SIZE]
    assert rig.reader.held == 2 * READ_SIZE  # the rest is in memory, the pipe empty
    assert rig.behind_at_hand == [2 * READ_SIZE]
    assert rig.pacing.drained == 0  # not everything was handed over yet
    rig.clock.advance(0)
    rig.clock.advance(0)
    assert sum(len(d) for d in rig.handed) == 3 * READ_SIZE
    assert rig.reader.held == 0
    assert rig.pacing.drained == 1  # the last turn emptied the queue and handed it all over
    assert not rig.clock.getDelayedCalls()


def test_the_limit_leaves_the_rest_in_the_queue(rig):
    rig.write(6 * READ_SIZE)
    rig.reader.turn()
    # Four reads held at most: one handed over, three held, two in the pipe.
    assert rig.reader.held == 3 * READ_SIZE
    assert rig.behind_at_hand == [5 * READ_SIZE]
    while rig.clock.getDelayedCalls():
        rig.clock.advance(0)
    assert sum(len(d) for d in rig.handed) == 6 * READ_SIZE


def test_the_end_of_the_queue_hands_over_what_was_read_first(rig):
    rig.write(2 * READ_SIZE)
    os.close(rig.into)
    why = rig.reader.turn()
    assert why is main.CONNECTION_DONE
    assert sum(len(d) for d in rig.handed) == 2 * READ_SIZE


def test_an_end_met_outside_doRead_is_said_through_lost(rig):
    rig.write(2 * READ_SIZE)
    rig.reader.turn()
    os.close(rig.into)
    rig.clock.advance(0)
    assert sum(len(d) for d in rig.handed) == 2 * READ_SIZE
    assert len(rig.lost) == 1
    assert rig.lost[0].value is main.CONNECTION_DONE


def test_a_read_error_met_by_a_drain_is_logged_once_and_ends_the_next_turn(rig):
    from twisted.logger import Logger

    logged: list[dict] = []
    rig.reader._log = Logger(observer=logged.append)
    rig.write(6 * READ_SIZE)
    assert rig.reader.turn() is None  # four reads held (the limit), one handed over
    # The descriptor starts failing: a directory's reads fail with EISDIR.
    directory = os.open(tempfile.gettempdir(), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.dup2(directory, rig.out)
    finally:
        os.close(directory)
    rig.reader.drain()
    assert sum(len(d) for d in rig.handed) == 4 * READ_SIZE  # what was read is handed over
    assert rig.reader.turn() is main.CONNECTION_LOST  # the reactor's next doRead
    assert [event["log_format"] for event in logged] == ["Reading {what} events failed: {error}"]


def test_drain_hands_everything_over_whatever_the_limit(rig):
    rig.write(6 * READ_SIZE)
    rig.reader.drain()
    assert sum(len(d) for d in rig.handed) == 6 * READ_SIZE
    assert rig.reader.held == 0


def test_drain_hands_over_what_waited_when_called_and_no_more(rig):
    """A writer that goes on writing while the drain hands over cannot hold it for ever."""
    rig.write(3 * READ_SIZE)
    rig.reader.turn()  # one read handed over, two held
    handed_before = len(rig.handed)

    keep_writing = rig._hand

    def hand_and_write(data: bytes) -> None:
        keep_writing(data)
        rig.write(READ_SIZE)  # more comes with every hand-over

    rig.reader._hand_over = hand_and_write
    rig.reader.drain()
    # The two held reads went; what came during the drain waits for a turn.
    assert len(rig.handed) - handed_before == 2
    assert rig.reader.held == READ_SIZE  # read while draining, not handed over
    assert rig.reader.behind() == 2 * READ_SIZE  # and the last one still in the pipe


def test_close_cancels_the_next_turn_and_drops_what_is_held(rig):
    rig.write(2 * READ_SIZE)
    rig.reader.turn()
    assert rig.clock.getDelayedCalls()
    rig.reader.close()
    assert not rig.clock.getDelayedCalls()
    assert rig.reader.held == 0
    assert len(rig.handed) == 1


class Slow:
    """A sink that keeps what it was handed."""

    def __init__(self) -> None:
        self.names: list[bytes] = []

    def file_events(self, batch, read_time) -> None:
        self.names.extend(name for name, _mask in batch)

    def watch_ended(self, mask: int) -> None:
        pass

    def events_lost(self) -> None:
        pass


def test_a_burst_longer_than_the_kernel_queue_does_not_overflow_while_handed_over():
    """
    The kernel queue holds 16,384 events here.  10,000 events of long names
    are more than four reads: the source used to hand over four reads per
    turn and leave the rest queued, so 12,000 more made while it handed
    them over overflowed the queue.  Read ahead, the queue is empty after
    the first turn, and 12,000 more fit.
    """
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        room = int(f.read())
    if room > 20_000:
        pytest.skip("the kernel queue holds more than this test makes")
    root = tempfile.mkdtemp(prefix="dirobserver-readahead-")
    clock = ClockReactor()
    overflows = []
    source = InotifySource(clock, on_overflow=lambda: overflows.append(1))  # type: ignore[arg-type]
    sink = Slow()
    try:
        source.add(os.fsencode(root), sink)
        source.startReading()
        names = [f"{i:06d}-" + "n" * 200 for i in range(22_000)]
        for name in names[:10_000]:
            open(os.path.join(root, name), "wb").close()
        source.doRead()
        handed_first = len(sink.names)
        assert handed_first < 10_000  # one read's worth handed over, the rest held
        for name in names[10_000:]:
            open(os.path.join(root, name), "wb").close()
        source.doRead()
        while clock.getDelayedCalls():
            clock.advance(0)
        assert source.overflows == 0
        assert overflows == []
        assert sorted(sink.names) == [os.fsencode(n) for n in names]
    finally:
        source.close()
        shutil.rmtree(root, True)


def test_a_turn_that_finds_nothing_is_no_stream(rig):
    assert rig.reader.turn() is None
    assert rig.handed == []
    assert rig.pacing.drained == 0  # nothing read: no nap
    rig.write(100)
    rig.reader.turn()
    assert rig.pacing.drained == 1
