"""
Listings of a section with C{announce_once}: announce only what was never
announced, and keep the record no larger than what is present.

The record (L{dirobserver.redis.record}) is a Redis hash, one field per file
announced.  A listing reads the files it found in chunks of L{LOOKUP}: for
each chunk it looks at the files (their inode: L{dirobserver.announce.file_facts})
and asks Redis for their records in one C{HMGET}; it announces a file only
when no event of it is held by the writer and its record is absent, of
another file (another inode: replaced, renamed over), or older than
C{reannounce_after}.  Only one chunk's replies are waited for at a time.

Why the writer's connection: the C{HMGET} is sent on the connection of the
writer's rounds, after every transaction sent before it, so its reply sees
every record those wrote; an event pushed after it was sent is still held
when its reply comes, and the held entries are looked at then, not before.
Either way an event written, in flight or held counts as announced.

Redis unreachable (or slow past the deadline): the listing cannot tell, so
it stops, marked incomplete; the catch-up lists the rest later
(L{RecordUnavailable}).

After a full listing, L{ListedOnce.prune} walks the record (C{HSCAN}) and
removes (C{HDEL}) the fields of files no longer there, unless an event of
that name is held: the record never outgrows what is present for longer
than one full listing.  Files are looked up from a descriptor of the
directory, so that a directory renamed away for a moment does not empty
its record (L{ListedOnce._gone}).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dirobserver.announce.announcer import Announcer
from dirobserver.announce.file_facts import GONE
from dirobserver.redis.record import as_bytes, parse_value, same_file
from dirobserver.redis.writer import RedisWriter

#: Files looked up in one C{HMGET}; record fields read per C{HSCAN}.
LOOKUP = 1000


def _lookups(directory: bytes) -> int | None:
    """A descriptor of C{directory} to look its files up from (None: it cannot be opened now)."""
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


class RecordUnavailable(Exception):
    """Redis did not answer a lookup of the record: the listing cannot go on."""

    def __init__(self, why: Failure) -> None:
        super().__init__(why.getErrorMessage())
        self.why = why


def _held_values(_: Any, held: Any, key: str, paths: list[bytes], into: list[Any]) -> None:
    """Note, in C{into}, the record values the writer holds for C{paths}."""
    into.extend(held.value(key, path) for path in paths)


class ListedOnce:
    """
    The announcing part of one section's listings with C{announce_once}.

    @ivar skipped: files listings found and did not announce (announced
        already, by their record or a held event).
    @ivar pruned: record fields removed for files gone.
    """

    def __init__(self, announcer: Announcer, writer: RedisWriter, reannounce_after: float,
                 directory: str) -> None:
        assert announcer.facts is not None and announcer.facts.record is not None
        self._announcer = announcer
        self._facts = announcer.facts
        self._key: str = announcer.facts.record
        self._writer = writer
        self._reannounce_after = reannounce_after
        self._directory = os.fsencode(directory)
        self.skipped = 0
        self.pruned = 0

    def _ask(self, *command: Any) -> tuple[defer.Deferred, list[Any]]:
        """Send C{command}; the Deferred to yield, and the box its reply lands in."""
        box: list[Any] = []
        d = self._writer.command(*command)
        d.addCallbacks(box.append, lambda f: box.append(RecordUnavailable(f)))
        return d, box

    def announce(self, paths: Iterator[bytes], now: float, stopped: Callable[[], bool]) -> Iterator[Any]:
        """
        Announce, as C{"exists"} stamped C{now}, those of C{paths} (oldest
        first, filtered and not waiting) that were not announced.  A
        generator for the cooperator: it yields the Deferreds of its lookups.

        @raise RecordUnavailable: Redis did not answer a lookup.
        """
        writer, key, held = self._writer, self._key, self._writer.records
        look_all, exists = self._facts.look_all, self._announcer.exists
        ceiling = max(1, writer.max_held * 3 // 4)
        reannounce = self._reannounce_after
        while True:
            chunk = []
            for path in paths:
                chunk.append(path)
                if len(chunk) == LOOKUP:
                    break
            if not chunk:
                return
            looks = look_all(chunk)
            d, box = self._ask("HMGET", key, *chunk)
            # The held entries are read the moment the reply arrives, not
            # when the cooperator resumes this generator: a held event
            # written in between is in neither the reply nor, by then, the
            # held entries, and would be announced twice.
            holding: list[Any] = []
            d.addCallback(_held_values, held, key, chunk, holding)
            yield d
            if isinstance(box[0], RecordUnavailable):
                raise box[0]
            for path, seen, value, held_value in zip(chunk, looks, box[0], holding, strict=True):
                if seen is GONE:
                    continue  # gone since the scan: nothing to announce
                dev, ino = seen[0], seen[1]
                if same_file(held_value, dev, ino):
                    self.skipped += 1
                    continue
                recorded = parse_value(as_bytes(value))
                if (recorded is not None and recorded[0] == dev and recorded[1] == ino
                        and not (reannounce and now - recorded[2] >= reannounce)):
                    self.skipped += 1
                    continue
                while writer.held() >= ceiling:
                    yield writer.room()
                    if stopped():
                        return
                exists(path, now, seen)
            if stopped():
                return

    def prune(self, stopped: Callable[[], bool]) -> Iterator[Any]:
        """
        Remove from the record the files no longer present (see the module
        docstring).  A generator for the cooperator.

        @raise RecordUnavailable: Redis did not answer.
        """
        key, held = self._key, self._writer.records
        cursor: Any = "0"
        while True:
            d, box = self._ask("HSCAN", key, cursor, "COUNT", LOOKUP)
            yield d
            if isinstance(box[0], RecordUnavailable):
                raise box[0]
            cursor, flat = box[0]
            gone = self._gone(key, held, flat[::2])
            if gone is None:
                return  # the directory is not there now: nothing is known gone
            if gone:
                d, box = self._ask("HDEL", key, *gone)
                yield d
                if isinstance(box[0], RecordUnavailable):
                    raise box[0]
                self.pruned += int(box[0])
            if str(cursor) == "0" or stopped():
                return

    def _gone(self, key: str, held: Any, fields: list[Any]) -> list[bytes] | None:
        """
        Those of C{fields} whose file is gone and no event of which is held;
        None when the directory cannot be opened now.

        The files are looked up from a descriptor of the directory, opened
        for this chunk and closed before the next reactor turn: a directory
        renamed away for a moment (and back) must not make every file in it
        look gone, and have its whole record removed and announced again
        (found by the soak: a prune that ran while the directory was
        renamed away emptied the record of 2,000 files present).  Held
        only within this loop, the descriptor delays no C{IN_DELETE_SELF}.
        """
        top = _lookups(self._directory)
        if top is None:
            return None
        lstat = os.lstat
        gone = []
        try:
            for raw in fields:
                field = as_bytes(raw)
                assert field is not None
                try:
                    lstat(field, dir_fd=top)
                except (OSError, ValueError):  # as lexists: absent, or a name no path can be
                    if not held.holds(key, field):
                        gone.append(field)
        finally:
            os.close(top)
        return gone
