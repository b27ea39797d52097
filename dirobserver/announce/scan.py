"""
Reading a directory for a listing: its entries, oldest first, in little memory.

L{scan_directory} reads a directory with the one directory walker
(L{dirobserver.sources.walk.Walk}; with a L{Walker}, the whole tree under
it: every sub-directory is watched before it is read),
keeps the entries that pass the section's filters, and returns them as
L{Entries}: oldest modification time first over the whole tree, ties in the
byte order of their paths.

Memory.  A listing holds every entry at once (the oldest is known only once
all are read).  As a tuple C{(float, str)} an entry costs about 160 bytes
(the tuple, the float, the string, the list's pointer): 160 MB for a
million files.  Here an entry is a I{key}, one bytes string: the modification
time in nanoseconds as L{KEY_WIDTH} hexadecimal digits (fixed width, so the
order of the bytes is the order of the times) followed by the path's own
bytes, undecoded.  No key holds a NUL byte (no path can), so sorted keys are
kept joined by NULs, many to one bytes object: about 27 bytes an entry for a
name of ten bytes.  Names are decoded only when they are announced.

Time.  Sorting a million keys in one go would freeze the reactor for a
second, and with it every other directory's events.  So the scan is a
generator run by the service's L{twisted.internet.task.Cooperator}: it
yields every L{CHUNK} entries, and sorts and packs the run of keys read
since the yield before.  At the end the runs are merged, yielding after
every L{CHUNK} keys: C{heapq.merge} fed by C-level iterators that unpack one
L{BLOCK} of each run at a time and release the blocks they are done with.
The trade-off: a merge of many short runs costs more CPU (the merge's
Python loop, about a microsecond a key) than one sort of the whole, and
more than merging unpacked runs (a split per block); it keeps every step
short and the memory near the packed size (the runs shrink as the sorted
segments grow).
"""

from __future__ import annotations

import bisect
import heapq
import math
import operator
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain, islice
from typing import Protocol

from twisted.internet import defer, task

from dirobserver.announce.event import decode_name
from dirobserver.sources.walk import CHUNK, DIRECTORIES, DirEntries, Walk

#: Keys packed together in a sorted run: the merge unpacks one block per run
#: at a time (a few hundred runs for a million files).
BLOCK = 128
#: Bytes of a key before the path: the modification time.
KEY_WIDTH = 16

# Nanoseconds are offset by 2**63 so that times before 1970 sort too; the
# 16 digits then cover the years 1677 to 2262, and a time outside is taken
# as the nearest end (such files sort among themselves by path).
_BIAS = 1 << 63
_TOP = (1 << 64) - 1
_SEP = b"\0"
_split = operator.methodcaller("split", _SEP)


def entry_key(mtime_ns: int, path: bytes) -> bytes:
    """
    The key of one entry.

    @param mtime_ns: its modification time in nanoseconds (C{st_mtime_ns}).
    @param path: its name, or its path relative to the listed directory,
        as the kernel's bytes.
    """
    biased = mtime_ns + _BIAS
    if not 0 <= biased <= _TOP:
        biased = min(max(biased, 0), _TOP)
    return b"%016x%s" % (biased, path)


def time_key(seconds: float, through: bool = False) -> bytes:
    """
    A key to look a time up in L{Entries.index}.

    @param seconds: a time in seconds since the epoch.
    @param through: sort after every entry modified at C{seconds} (else
        before).
    """
    fraction, whole = math.modf(seconds)
    # As os.utime turns a float into nanoseconds (rounded down).
    ns = int(whole) * 1_000_000_000 + math.floor(fraction * 1e9) + through
    return b"%016x" % min(max(ns + _BIAS, 0), _TOP)


def key_path(key: bytes) -> bytes:
    """The path a key holds (the kernel's bytes)."""
    return key[KEY_WIDTH:]


def key_seconds(key: bytes) -> float:
    """The modification time a key holds, in seconds since the epoch."""
    return (int(key[:KEY_WIDTH], 16) - _BIAS) / 1e9


class Entries:
    """
    The sorted keys of a scan, packed in segments of L{CHUNK} keys (the
    last one may be shorter), each one bytes object.
    """

    __slots__ = ("_segments", "_firsts", "_count")

    def __init__(self) -> None:
        self._segments: list[bytes] = []
        # The first key of each segment, to find a key without unpacking.
        self._firsts: list[bytes] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, keys: list[bytes]) -> None:
        """
        Add a segment.

        @param keys: sorted keys that sort after those added before: as
            many as L{CHUNK}, fewer only for the last segment.
        """
        if not keys:
            return
        if self._count % CHUNK:
            raise ValueError("only the last segment can be shorter than CHUNK")
        self._segments.append(_SEP.join(keys))
        self._firsts.append(keys[0])
        self._count += len(keys)

    def index(self, key: bytes, after: bool = False) -> int:
        """
        How many keys sort before C{key} (C{after}: before it or equal).
        """
        if after:
            key += _SEP  # the least bytes string above key
        s = bisect.bisect_left(self._firsts, key) - 1
        if s < 0:
            return 0
        return s * CHUNK + bisect.bisect_left(_split(self._segments[s]), key)

    def key(self, i: int) -> bytes:
        """The key at position C{i} (0: the oldest)."""
        if not 0 <= i < self._count:
            raise IndexError(i)
        return _split(self._segments[i // CHUNK])[i % CHUNK]

    def keys(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The keys from position C{start} to C{stop}, oldest first, unpacked a segment at a time."""
        stop = self._count if stop is None else min(stop, self._count)
        return chain.from_iterable(self._parts(max(start, 0), stop))

    def _parts(self, start: int, stop: int) -> Iterator[list[bytes]]:
        while start < stop:
            s, offset = divmod(start, CHUNK)
            part = _split(self._segments[s])[offset:offset + stop - start]
            start += len(part)
            yield part


def _pack(keys: list[bytes]) -> list[bytes]:
    """A run: C{keys} sorted, packed in blocks, the first block last (popped first)."""
    keys.sort()
    blocks = [_SEP.join(keys[i:i + BLOCK]) for i in range(0, len(keys), BLOCK)]
    blocks.reverse()
    return blocks


def _unpack(blocks: list[bytes]) -> Iterator[bytes]:
    """The keys of a run, in order, releasing each block once unpacked."""
    def popping() -> Iterator[bytes]:
        while blocks:
            yield blocks.pop()
    return chain.from_iterable(map(_split, popping()))


def merge(runs: list[list[bytes]], out: Entries) -> Iterator[None]:
    """
    Merge sorted runs (as L{_pack} makes them) into C{out}, yielding
    between two segments (never after the last one: a small directory
    costs no extra turn).
    """
    merged: Iterable[bytes] = heapq.merge(*map(_unpack, runs)) if len(runs) > 1 else _unpack(runs[0])
    runs.clear()  # the iterators hold the blocks now, and drop them as they go
    while True:
        part = list(islice(merged, CHUNK))
        out.append(part)
        if len(part) < CHUNK:
            return
        yield None


class Walker(Protocol):
    """What a listing asks of the section's directories (a L{dirobserver.sources.tree.DirectoryTree})."""

    #: list the sub-directories too, at any depth
    recursive: bool

    def accepts_directory(self, name: bytes) -> bool:
        """Whether sub-directory C{name} belongs to the tree (C{ignore_directories})."""

    def enter(self, subdirectory: bytes) -> bool:
        """
        The listing is about to read C{subdirectory} (relative to the top):
        watch it first, so nothing created after the read is missed.

        @return: whether to read it (False: it cannot be watched nor read).
        """

    def wants_names(self) -> bool:
        """Whether some directory is polled, and L{seen} wants the names read."""

    def seen(self, subdirectory: bytes, names: list[bytes]) -> None:
        """Every name read in C{subdirectory} (C{b""}: the top), for its poller."""


def scan_directory(
    path: str,
    accepts: Callable[[str], bool],
    subdirectories: bool,
    cooperator: task.Cooperator,
    walker: Walker | None = None,
) -> defer.Deferred:
    """
    List C{path} cooperatively.

    @param accepts: the section's name filter (of a plain name).
    @param subdirectories: keep sub-directories too (else files only).
    @param walker: the section's tree: with it, paths are relative to
        C{path} (C{b"a/b/f.csv"}) when it is recursive, and it hears of
        every directory read.
    @return: a Deferred firing with the L{Entries}; it fails with
        C{OSError} when the directory cannot be read.
    """
    entries = Entries()
    work = _scan(os.fsencode(path), accepts, subdirectories, entries, walker)
    return cooperator.cooperate(work).whenDone().addCallback(lambda _: entries)


class _Listing:
    """
    What a scan gathers as L{Walk} reads: the keys of the entries that pass
    the filters, in sorted runs, and the sub-directories to read.
    """

    def __init__(
        self,
        path: bytes,
        accepts: Callable[[str], bool],
        subdirectories: bool,
        walker: Walker | None,
    ) -> None:
        self.path = path
        self.accepts = accepts
        self.subdirectories = subdirectories
        self.walker = walker
        self.recursive = walker is not None and walker.recursive
        self.runs: list[list[bytes]] = []
        self.run: list[bytes] = []
        #: the names read in the directory being read, for the walker
        #: (None: it does not want them)
        self.names: list[bytes] | None = None
        self.walk: Walk[bytes] = Walk(b"", self.enter, self.entries, self.turn, self.done, self.unreadable,
                                      directories=DIRECTORIES)

    def enter(self, subdirectory: bytes) -> bytes | None:
        if subdirectory and not self.walker.enter(subdirectory):  # type: ignore[union-attr]
            return None
        # Asked for each directory: entering one may have made it polled.
        walker = self.walker
        self.names = [] if walker is not None and walker.wants_names() else None
        return os.path.join(self.path, subdirectory) if subdirectory else self.path

    def entries(self, subdirectory: bytes, chunk: DirEntries) -> None:
        prefix = subdirectory + b"/" if subdirectory else b""
        names = self.names
        recursive = self.recursive
        walker = self.walker
        accepts = self.accepts
        subdirectories = self.subdirectories
        push = self.walk.push
        run = self.run
        for entry in chunk:
            raw = entry.name
            if names is not None:
                names.append(raw)
            try:
                if recursive and entry.is_dir(follow_symlinks=False):
                    if not walker.accepts_directory(raw):  # type: ignore[union-attr]
                        continue  # neither listed nor announced
                    push(prefix + raw)
                if not accepts(decode_name(raw)):
                    continue
                if entry.is_dir() and not subdirectories:
                    continue
                mtime_ns = entry.stat().st_mtime_ns
            except OSError:
                continue  # removed between the listing and the stat
            run.append(entry_key(mtime_ns, prefix + raw))

    def turn(self, _subdirectory: bytes) -> Generator[None, None, bool]:
        # Sort and pack what was read since the last turn, so the reactor
        # never waits for a sort of more than CHUNK keys.
        if self.run:
            self.runs.append(_pack(self.run))
            self.run = []
        yield None
        return True

    def done(self, subdirectory: bytes) -> Iterator[None]:
        if self.names is not None:
            self.walker.seen(subdirectory, self.names)  # type: ignore[union-attr]
        return iter(())

    @staticmethod
    def unreadable(subdirectory: bytes, error: OSError) -> None:
        if not subdirectory:
            raise error
        # A sub-directory gone or unreadable: its watch says so.


def _scan(
    path: bytes,
    accepts: Callable[[str], bool],
    subdirectories: bool,
    out: Entries,
    walker: Walker | None,
) -> Iterator[object]:
    listing = _Listing(path, accepts, subdirectories, walker)
    yield from listing.walk.run()
    if listing.run:
        listing.runs.append(_pack(listing.run))
    if listing.runs:
        yield from merge(listing.runs, out)
