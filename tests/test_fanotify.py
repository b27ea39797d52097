"""
The fanotify source: the parsing of the kernel's records (bytes laid out as
the kernel does), the split of merged events, and the source on a real
fanotify group (as root) read synchronously with C{drain()}: what a sink
gets, what is dropped, how a sub-directory's end is said, the overflow.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from twisted.internet import reactor

from dirobserver.sources import fanotify_calls as calls
from dirobserver.sources.fanotify import FanotifySource
from dirobserver.sources.fanotify_choice import open_group, refusal
from dirobserver.sources.fanotify_events import parse, split
from dirobserver.sources.masks import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    WATCH_MASK,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="a fanotify filesystem mark needs root")


def record(mask: int, info_type: int = calls.FAN_EVENT_INFO_TYPE_DFID_NAME, fsid: bytes = b"F" * 8,
           handle: bytes = b"H" * 8, handle_type: int = 1, name: bytes = b"f") -> bytes:
    """One event as the kernel writes it: metadata, one info record padded to 4 bytes."""
    info = calls.FID_HEAD.pack(fsid, len(handle), handle_type) + handle
    if info_type == calls.FAN_EVENT_INFO_TYPE_DFID_NAME:
        info += name + b"\0"
    info += b"\0" * (-(len(info) + 4) % 4)
    info = calls.INFO_HEADER.pack(info_type, 0, len(info) + 4) + info
    length = calls.METADATA.size + len(info)
    return calls.METADATA.pack(length, 3, 0, calls.METADATA.size, mask, -1, 42) + info


def test_parse_reads_records_laid_out_as_the_kernel_does():
    """Key (fsid, handle type, handle), name and mask of each event; "." is the directory itself."""
    data = (record(IN_CREATE | IN_ISDIR, name=b"sub")
            + record(IN_MOVE_SELF | IN_ISDIR, name=b".", handle=b"K" * 12)
            + record(IN_CLOSE_WRITE, info_type=calls.FAN_EVENT_INFO_TYPE_FID, handle=b"Z" * 8)
            + calls.METADATA.pack(calls.METADATA.size, 3, 0, calls.METADATA.size,
                                  calls.FAN_Q_OVERFLOW, -1, 0))
    key = calls.handle_key(b"F" * 8, 1, b"H" * 8)
    assert list(parse(data)) == [
        (key, b"sub", IN_CREATE | IN_ISDIR),
        (calls.handle_key(b"F" * 8, 1, b"K" * 12), b"", IN_MOVE_SELF | IN_ISDIR),
        (calls.handle_key(b"F" * 8, 1, b"Z" * 8), b"", IN_CLOSE_WRITE),
        (b"", b"", calls.FAN_Q_OVERFLOW),
    ]


def test_parse_stops_at_a_truncated_or_bogus_record():
    """A length shorter than the metadata ends the parse rather than looping."""
    assert list(parse(struct.pack("=I", 0) + b"\0" * 40)) == []
    assert list(parse(record(IN_CREATE)[:10])) == []


def test_a_merged_event_is_split_in_the_order_of_the_changes():
    """fanotify merges C{CREATE | CLOSE_WRITE}; sinks get inotify's two events, IN_ISDIR kept on each."""
    assert split(IN_CLOSE_WRITE | IN_CREATE) == [IN_CREATE, IN_CLOSE_WRITE]
    assert split(IN_MOVED_TO | IN_ISDIR) == [IN_MOVED_TO | IN_ISDIR]


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[bytes, int]] = []
        self.ended: list[int] = []
        self.lost = 0

    def file_events(self, batch, read_time) -> None:
        self.events += batch

    def watch_ended(self, mask: int) -> None:
        self.ended.append(mask)

    def events_lost(self) -> None:
        self.lost += 1


@pytest.fixture
def source(tmp_path: Path):
    descriptor = open_group([os.fsencode(tmp_path)], WATCH_MASK | IN_CLOSE_WRITE)
    made = FanotifySource(reactor, descriptor, devices={os.stat(tmp_path).st_dev})
    yield made
    made.close()


@root_only
def test_a_sink_gets_its_directory_events_and_nothing_else(tmp_path, source):
    """Creations in the directory reach its sink, with inotify's bits; a sibling's are dropped."""
    watched, sibling = tmp_path / "in", tmp_path / "out"
    watched.mkdir()
    sibling.mkdir()
    sink = Sink()
    source.add(os.fsencode(watched), sink, WATCH_MASK)
    (sibling / "no").write_bytes(b"x")
    (watched / "f").write_bytes(b"x")
    (watched / "d").mkdir()
    source.drain()
    assert sink.events == [(b"f", IN_CREATE), (b"d", IN_CREATE | IN_ISDIR)]
    assert source.events >= 3


@root_only
def test_masks_are_per_sink(tmp_path, source):
    """Two sinks on one directory: the one that asked for closes gets them, the other does not."""
    plain, closing = Sink(), Sink()
    source.add(os.fsencode(tmp_path), plain, WATCH_MASK)
    source.add(os.fsencode(tmp_path), closing, WATCH_MASK | IN_CLOSE_WRITE)
    (tmp_path / "f").write_bytes(b"x")
    source.drain()
    assert plain.events == [(b"f", IN_CREATE)]
    assert closing.events == [(b"f", IN_CREATE), (b"f", IN_CLOSE_WRITE)]


@root_only
def test_a_subdirectory_renamed_ends_its_watch_and_is_followed_under_its_new_name(tmp_path, source):
    """
    The rename is said by the parent (C{MOVED_FROM}): the old name's sink
    hears its watch ended; the directory added again under its new name
    (as the tree does) gets the events of files made in it afterwards.
    """
    (tmp_path / "a" / "b").mkdir(parents=True)
    source.drain()  # the mark saw the mkdir: before any sink asked
    top, old = Sink(), Sink()
    source.add(os.fsencode(tmp_path), top, WATCH_MASK)
    source.add(os.fsencode(tmp_path / "a"), old, WATCH_MASK)
    os.rename(tmp_path / "a", tmp_path / "z")
    source.drain()
    assert old.ended == [IN_MOVE_SELF]
    assert top.events == [(b"z", IN_MOVED_TO | IN_ISDIR)]
    assert not top.ended
    new = Sink()
    source.add(os.fsencode(tmp_path / "z"), new, WATCH_MASK)
    (tmp_path / "z" / "after").write_bytes(b"x")
    source.drain()
    assert new.events == [(b"after", IN_CREATE)]
    assert old.events == []


@root_only
def test_a_top_directory_moved_away_ends_its_watch(tmp_path, source):
    """A directory whose parent nobody watches ends with C{FAN_MOVE_SELF}."""
    (tmp_path / "top").mkdir()
    sink = Sink()
    source.add(os.fsencode(tmp_path / "top"), sink, WATCH_MASK)
    os.rename(tmp_path / "top", tmp_path / "elsewhere")
    source.drain()
    assert sink.ended and sink.ended[0] & IN_MOVE_SELF


@root_only
def test_a_directory_on_an_unmarked_filesystem_is_refused(tmp_path, source):
    """No event would come from it: C{add} says so (EXDEV) rather than watching nothing."""
    other = "/dev/shm" if os.stat("/dev/shm").st_dev != os.stat(tmp_path).st_dev else "/proc"
    with pytest.raises(OSError) as caught:
        source.add(os.fsencode(other), Sink(), WATCH_MASK)
    assert caught.value.errno == 18  # EXDEV


@root_only
def test_the_overflow_event_tells_every_sink_and_the_service(tmp_path):
    """C{FAN_Q_OVERFLOW} (no record): every sink hears of lost events, then C{on_overflow}."""
    overflowed = []
    descriptor = open_group([os.fsencode(tmp_path)], WATCH_MASK)
    source = FanotifySource(reactor, descriptor, lambda: overflowed.append(1))
    try:
        sink = Sink()
        source.add(os.fsencode(tmp_path), sink, WATCH_MASK)
        source._hand_over(calls.METADATA.pack(calls.METADATA.size, 3, 0, calls.METADATA.size,
                                              calls.FAN_Q_OVERFLOW, -1, 0))
        assert (sink.lost, overflowed, source.overflows) == (1, [1], 1)
    finally:
        source.close()


def test_an_explicit_request_is_refused_in_one_line_naming_the_section():
    """The refusal names the section, the directory and the reason."""

    class Refusing(calls.LibcFanotify):
        def __init__(self) -> None:
            """No libc: nothing is called but init."""

        def init(self) -> int:
            raise calls.FanotifyUnavailable(1, "Operation not permitted")

    class Section:
        name, directory, watch_mode, recursive = "in", "/srv/in", "fanotify", True

    line = refusal([Section()], Refusing())  # type: ignore[list-item]
    assert line is not None and "\n" not in line
    assert line.startswith("[in] watch_mode = fanotify cannot be had for /srv/in: ")
    assert "CAP_SYS_ADMIN" in line


@root_only
def test_the_watchdog_probe_is_answered_through_the_group(tmp_path, source):
    """The liveness probe, given the fanotify source, gets its probe file back through the group."""
    import tempfile

    from twisted.internet.task import Clock

    from dirobserver.sources.liveness import InotifyLivenessProbe

    clock, deaf = Clock(), []
    probe = InotifyLivenessProbe(5.0, clock, lambda: deaf.append(1), lambda: deaf.append("dead"),
                                 mechanism="fanotify", remedy="listing every directory")
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)  # on the marked filesystem
    try:
        probe.start(source)
    finally:
        tempfile.tempdir = old
    try:
        source.drain()
        assert probe.probes == 1 and probe.answers == 1
        clock.advance(probe.interval)
        source.drain()
        assert (probe.probes, probe.answers, deaf) == (2, 2, [])
        assert probe.healthy()
    finally:
        probe.stop()
    assert clock.getDelayedCalls() == []
