"""
The record of what was announced (C{announce_once}): its values, and the
part of it that is still in the writer's hands.

A section with C{announce_once} keeps, in one Redis hash (its C{announced}
key, by default the queue's name with C{:announced}), one field per file
it announced: the file's path relative to the section's directory, as the
name's own bytes.  The value says which file that was and when::

    b"<st_dev>:<st_ino>:<event_timestamp>"

The field is written by the same C{MULTI/EXEC} as the event
(L{dirobserver.redis.queue_types}), so that Redis has both or neither: a
failover that loses the event loses its record too, and the file is
announced again rather than never.

Until Redis acknowledges it, an event is held by the writer; its record
entry is held with it, here (L{HeldRecords}), so that a listing that runs
meanwhile (the catch-up after an outage, with thousands of events held)
counts it as announced too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def record_stamp(when: float) -> bytes:
    """
    The end of the values recorded at C{when}: C{b":<event_timestamp>"}.
    Every file of one read (or one listing) shares it, and formatting a
    float is most of the cost of a value: made once, it is reused.
    """
    return b":%r" % when


def record_value(dev: int, ino: int, when: float, stamp: bytes | None = None) -> bytes:
    """
    The value recorded for a file (see the module docstring).

    @param stamp: C{record_stamp(when)}, if made already.
    """
    return b"%d:%d%s" % (dev, ino, record_stamp(when) if stamp is None else stamp)


def record_entries(fields: Sequence[bytes], files: Iterable[Sequence[Any]], when: float) -> list[tuple[bytes, bytes]]:
    """
    The record entries C{(field, value)} of files announced together at
    C{when} (a read, a settle): C{files} gives each field's device and
    inode first (a L{dirobserver.announce.file_facts.Look}).  One
    comprehension, the time formatted once: this runs for every file of a
    burst.
    """
    stamp = record_stamp(when)
    return [(field, b"%d:%d%s" % (seen[0], seen[1], stamp)) for field, seen in zip(fields, files, strict=True)]


def parse_value(value: bytes | None) -> tuple[int, int, float] | None:
    """C{(dev, ino, when)} of a recorded value; None for none, or one not ours."""
    if not value:
        return None
    try:
        dev, ino, when = value.split(b":")
        return int(dev), int(ino), float(when)
    except ValueError:
        return None


def as_bytes(value: Any) -> bytes | None:
    """A reply's string as bytes (the protocol gives text where it is UTF-8), or None."""
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def same_file(value: bytes | None, dev: int, ino: int) -> bool:
    """Whether a recorded (or held) value is of the file C{dev}, C{ino}."""
    return value is not None and value.startswith(b"%d:%d:" % (dev, ino))


class HeldRecords:
    """
    The record entries of the events the writer holds (not acknowledged
    yet), per record key: each field held, with the value of its latest
    held event.

    Holding costs one C{dict.update} per batch, not Python work per entry:
    this runs for every file of a burst.  No count of the events of a
    field is kept.  Releasing an entry forgets its field when the value
    held is that entry's value: a later event of the field (another value)
    keeps it held until it is released in turn.  Two held events of one
    field with equal values (the same file, read at the same time) are
    forgotten with the first acknowledged: Redis then has that very value,
    so a listing reads the same answer from the record as it would from
    here.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, dict[bytes, bytes]] = {}

    def hold(self, key: str, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Events with these C{(field, value)} entries are held now."""
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = {}
        held.update(entries)

    def release(self, key: str, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Those events are no longer held (acknowledged, or given up)."""
        held = self._held.get(key)
        if held is None:
            return
        get = held.get
        for field, value in entries:
            if get(field) == value:
                del held[field]
        if not held:
            del self._held[key]

    def value(self, key: str, field: bytes) -> bytes | None:
        """The value of the latest held event of C{field}, if one is held."""
        return self._held.get(key, {}).get(field)

    def holds(self, key: str, field: bytes) -> bool:
        """Whether an event of C{field} is held."""
        return field in self._held.get(key, ())

    def count(self) -> int:
        """How many fields are held, over every key."""
        return sum(map(len, self._held.values()))
