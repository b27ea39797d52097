"""
Directory listing ("boot the pump" and the forced poll), cooperative.

A listing reads a directory with C{os.scandir}, keeps the entries that pass
the section's filters, and returns them oldest modification time first.  A
directory of a million files takes seconds to read and sort; doing it in one
go would freeze the reactor, and with it every other directory's events.  So
the work is a generator run by a L{twisted.internet.task.Cooperator}: it
yields every L{CHUNK} entries, each chunk is sorted on its own, and the sorted
chunks are merged lazily, also yielding as it goes.
"""

from __future__ import annotations

import heapq
import os
from typing import Callable, Iterator

from twisted.internet import defer, task

from .events import decode_name

#: Entries handled between two chances for the reactor to run.
CHUNK = 2000

Entry = tuple[float, str]  # (modification time, decoded name)


def scan_directory(
    path: str,
    accepts: Callable[[str], bool],
    subdirectories: bool,
    cooperator: task.Cooperator | None = None,
) -> defer.Deferred:
    """
    List C{path} cooperatively.

    @param accepts: the section's name filter.
    @param subdirectories: keep sub-directories too (else files only).
    @return: a Deferred firing with a list of L{Entry}, oldest first; it
        fails with C{OSError} when the directory cannot be read.
    """
    result: list[Entry] = []
    work = _scan(os.fsencode(path), accepts, subdirectories, result)
    cooperate = cooperator.cooperate if cooperator is not None else task.cooperate
    return cooperate(work).whenDone().addCallback(lambda _: result)


def _scan(
    path: bytes,
    accepts: Callable[[str], bool],
    subdirectories: bool,
    out: list[Entry],
) -> Iterator[None]:
    chunks: list[list[Entry]] = []
    chunk: list[Entry] = []
    seen = 0
    with os.scandir(path) as entries:
        for entry in entries:
            seen += 1
            if seen % CHUNK == 0:
                if chunk:
                    chunk.sort()
                    chunks.append(chunk)
                    chunk = []
                yield None
            name = decode_name(entry.name)
            if not accepts(name):
                continue
            try:
                if entry.is_dir() and not subdirectories:
                    continue
                mtime = entry.stat().st_mtime
            except OSError:
                continue  # removed between the listing and the stat
            chunk.append((mtime, name))
    chunk.sort()
    if not chunks:
        out.extend(chunk)
        return
    chunks.append(chunk)
    for i, item in enumerate(heapq.merge(*chunks)):
        out.append(item)
        if i % CHUNK == 0:
            yield None
