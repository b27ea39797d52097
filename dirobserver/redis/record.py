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

from collections.abc import Iterable
from typing import Any


def record_value(dev: int, ino: int, when: float) -> bytes:
    """The value recorded for a file (see the module docstring)."""
    return b"%d:%d:%r" % (dev, ino, when)


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
    yet), per record key: the fields, with how many held events carry each
    and the value of the latest.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, dict[bytes, list]] = {}

    def hold(self, key: str, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Events with these C{(field, value)} entries are held now."""
        held = self._held.setdefault(key, {})
        for field, value in entries:
            known = held.get(field)
            if known is None:
                held[field] = [1, value]
            else:
                known[0] += 1
                known[1] = value

    def release(self, key: str, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Those events are no longer held (acknowledged, or given up)."""
        held = self._held.get(key)
        if held is None:
            return
        for field, _ in entries:
            known = held.get(field)
            if known is not None:
                known[0] -= 1
                if known[0] <= 0:
                    del held[field]
        if not held:
            del self._held[key]

    def value(self, key: str, field: bytes) -> bytes | None:
        """The value of the latest held event of C{field}, if one is held."""
        known = self._held.get(key, {}).get(field)
        return None if known is None else known[1]

    def holds(self, key: str, field: bytes) -> bool:
        """Whether an event of C{field} is held."""
        return field in self._held.get(key, ())

    def count(self) -> int:
        """How many fields are held, over every key."""
        return sum(map(len, self._held.values()))
