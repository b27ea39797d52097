"""
Reading directories without freezing the reactor: the one directory walker.

Three things read directories: a listing (L{dirobserver.announce.scan}: the
whole tree, for its files), a tree that finds a new sub-directory
(L{dirobserver.sources.tree}: watch each directory below it, then read it)
and a poller's scan (L{dirobserver.sources.polling}: the names of one
directory).  Each reads with C{os.scandir}, depth first, and must let the
reactor run every few thousand entries, since a directory may hold a million.
L{Walk} does that once; what each does with the entries is its own.

A walk is a generator for a L{twisted.internet.task.Cooperator}.  It hands
the entries over in chunks (C{entries}), and takes a turn (C{turn}: the
caller packs or delivers what it gathered, then yields) every L{CHUNK}
entries read over the whole walk, wherever they fall, so a tree of many
small directories gets its turns as a large directory does.  A chunk never
spans two directories.  Opening directories costs too (a tree may watch
each first): C{directories} asks for a plain turn every so many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from itertools import islice
from typing import Generic, TypeVar

#: Entries read between two chances for the reactor to run.
CHUNK = 2000
#: Directories opened between two chances for the reactor to run, for a
#: walk that asks (a listing of a tree of many small directories costs its
#: opens and watches, not its entries).
DIRECTORIES = 64

#: What the caller calls a directory of the walk (a relative path, a node).
D = TypeVar("D")

DirEntries = list["os.DirEntry[bytes]"]

#: A turn (see L{Walk}): it yields at least once (None, or a Deferred the
#: cooperator waits for) and returns whether to read on in the directory.
Turn = Generator[object, None, bool]


def _turn(_directory: object) -> Turn:
    yield None
    return True


def _nothing(_directory: object) -> Iterator[object]:
    return iter(())


def _raise(_directory: object, error: OSError) -> None:
    raise error


class Walk(Generic[D]):
    """
    One depth-first, cooperative reading of a directory and of what the
    caller finds below it (see the module docstring).
    """

    def __init__(
        self,
        start: D,
        enter: Callable[[D], bytes | None],
        entries: Callable[[D, DirEntries], None],
        turn: Callable[[D], Turn] = _turn,
        done: Callable[[D], Iterator[object]] = _nothing,
        unreadable: Callable[[D, OSError], None] = _raise,
        directories: int = 0,
    ) -> None:
        """
        @param start: the first directory.
        @param enter: when a directory's turn comes: the path to read, or
            None to skip it (gone, or no longer wanted).
        @param entries: takes a chunk of a directory's entries (the last one
            of a directory may be empty); it L{push}es the sub-directories to
            read.
        @param turn: a generator run every L{CHUNK} entries read, in the
            middle of a directory: it yields at least once, and returns
            whether to read on in that directory.
        @param done: a generator run after a directory was read through.
        @param unreadable: a directory could not be read (C{os.scandir}
            failed, at the start or in the middle): the walk goes on with
            the next unless this raises.  By default it raises.
        @param directories: a plain turn (C{yield None}) every so many
            directories opened; 0: none.
        """
        self._todo = [start]
        self._enter = enter
        self._entries = entries
        self._turn = turn
        self._done = done
        self._unreadable = unreadable
        self._directories = directories
        #: entries read so far
        self.read = 0

    def push(self, directory: D) -> None:
        """Read C{directory} too (next: depth first)."""
        self._todo.append(directory)

    def run(self) -> Iterator[object]:
        """The walk, for a cooperator (or C{yield from} in another one)."""
        todo = self._todo
        entries = self._entries
        every = self._directories
        opened = 0
        while todo:
            opened += 1
            if every and opened % every == 0:
                yield None
            directory = todo.pop()
            path = self._enter(directory)
            if path is None:
                continue
            try:
                with os.scandir(path) as found:
                    while True:
                        # Chunks end where the walk's count reaches a
                        # multiple of CHUNK: a turn every CHUNK entries, over
                        # directories of any size.
                        wanted = CHUNK - self.read % CHUNK
                        chunk = list(islice(found, wanted))
                        self.read += len(chunk)
                        entries(directory, chunk)
                        if len(chunk) < wanted:
                            break  # read through
                        if not (yield from self._turn(directory)):
                            break
            except OSError as e:
                self._unreadable(directory, e)
                continue
            yield from self._done(directory)
