"""
The event value and its JSON form.

Every notification pushed to Redis is one JSON object with exactly four keys::

    {"directory": "/srv/in", "filename": "a.csv", "event": "created",
     "event_timestamp": 1700000000.123456}

``event`` is ``"created"`` for a file created in, moved into or renamed within
the directory, and ``"exists"`` for a file announced by a listing.

A section's C{extra_fields} add, after those four and in this order, what
the event says of the file itself (its L{Facts}): ``"id"`` (the same string
in every announcement of one file, see L{dirobserver.announce.file_facts}),
``"size"`` (bytes) and ``"mtime"`` (seconds since the epoch); the last two
are ``null`` when the file was gone before the event was made.

File names are bytes on Linux and need not be UTF-8.  They are decoded once,
here at the edge, with Python's ``surrogateescape`` error handler (PEP 383):
every byte that is not part of valid UTF-8 becomes the lone surrogate
``U+DC80 + byte``, which the JSON text carries as the escape ``\\udcNN``.  The
JSON is pure ASCII, so the payload is valid whatever the name holds, and the
original bytes come back exactly with ``os.fsencode(event["filename"])`` in
Python (or by mapping each ``\\udcNN`` back to the byte ``0xNN`` elsewhere).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _quote  # C-accelerated
from typing import Any

CREATED = "created"
EXISTS = "exists"

#: What an event can say of its file: C{(id, size, mtime)}; size and mtime
#: are None when the file was gone (see L{dirobserver.announce.file_facts}).
Facts = tuple[str, int | None, float | None]


def json_extras(fields: tuple[str, ...], facts: Facts) -> str:
    """The JSON text of C{fields} (in order) of C{facts}, each after a comma."""
    file_id, size, mtime = facts
    parts = []
    for field in fields:
        if field == "id":
            parts.append(', "id": ' + _quote(file_id))
        elif field == "size":
            parts.append(', "size": ' + ("null" if size is None else str(size)))
        else:
            parts.append(', "mtime": ' + ("null" if mtime is None else repr(mtime)))
    return "".join(parts)


def decode_name(raw: bytes) -> str:
    """
    Turn a file name from the kernel into text, losslessly.

    @param raw: the name as bytes, as inotify and C{os.scandir(bytes)} give it.
    @return: the name with undecodable bytes as lone surrogates.
    """
    return raw.decode("utf-8", "surrogateescape")


def encode_name(name: str) -> bytes:
    """The kernel's bytes of a name L{decode_name} made (its exact inverse)."""
    return name.encode("utf-8", "surrogateescape")


class EventEncoder:
    """
    Encodes events of one monitored directory.

    The directory part of the JSON text is the same for every event of a
    directory, so it is built once; encoding an event is then a few string
    joins and one C-level quoting call, cheap enough to run for every file of
    a burst.
    """

    def __init__(self, directory: str, extra_fields: tuple[str, ...] = ()) -> None:
        """
        @param extra_fields: the section's C{extra_fields}: every event is
            then encoded with its L{Facts}.
        """
        self.directory = directory
        self._fields = extra_fields
        self._head = '{"directory": ' + _quote(directory) + ', "filename": '
        self._tail_key: tuple[str, float] | None = None
        self._tail = ""

    def encode(self, name: str, event: str, timestamp: float, facts: Facts | None = None) -> bytes:
        """
        Return the JSON bytes of one event.

        @param name: the file name (from L{decode_name}).
        @param event: L{CREATED} or L{EXISTS}.
        @param timestamp: seconds since the epoch.
        @param facts: the file's, when the section has C{extra_fields}.
        """
        if self._tail_key != (event, timestamp):
            # Events read together share their timestamp (see the watcher's
            # read_time), and a listing's share one: format it once.
            self._tail_key = (event, timestamp)
            self._tail = ', "event": "' + event + '", "event_timestamp": ' + repr(timestamp) + "}"
        if self._fields and facts is not None:
            return (self._head + _quote(name) + self._tail[:-1] + json_extras(self._fields, facts)
                    + "}").encode("ascii")
        return (self._head + _quote(name) + self._tail).encode("ascii")


class TreeEncoder:
    """
    Encodes events of a tree, whose names are paths relative to its top
    directory (C{"a/b/f.csv"}): the event's C{directory} is the directory
    that holds the file, and its C{filename} the file's name.

    One encoder per sub-directory is kept (made by C{make}, the queue
    shape's: JSON for a list, fields for a stream), the most recently used
    ones only (L{KEPT}), so a tree of a million directories costs no more
    than a few thousand.
    """

    #: sub-directory encoders kept at most
    KEPT = 4096

    def __init__(
        self,
        directory: str,
        make: Callable[[str], Callable[..., Any]] | None = None,
    ) -> None:
        self.directory = directory
        self._make = make if make is not None else (lambda d: EventEncoder(d).encode)
        self._top = self._make(directory)
        self._encoders: dict[str, Callable[..., Any]] = {}
        # The last one used: events of one directory tend to come together.
        self._last_directory: str | None = None
        self._last = self._top

    def encode(self, path: str, event: str, timestamp: float, facts: Facts | None = None) -> Any:
        """
        What the queue holds for one event (JSON bytes for a list).

        @param path: the file's path relative to the top directory (a plain
            name for a file of the top directory).
        @param facts: see L{EventEncoder.encode}.
        """
        cut = path.rfind("/")
        if cut < 0:
            return self._top(path, event, timestamp, facts)
        subdirectory = path[:cut]
        if subdirectory == self._last_directory:
            return self._last(path[cut + 1:], event, timestamp, facts)
        encoder = self._encoders.pop(subdirectory, None)
        if encoder is None:
            if len(self._encoders) >= self.KEPT:
                # The least recently used one (a dict keeps its order of
                # insertion, and a used encoder is put back at the end).
                del self._encoders[next(iter(self._encoders))]
            encoder = self._make(os.path.join(self.directory, subdirectory))
        self._encoders[subdirectory] = encoder
        self._last_directory, self._last = subdirectory, encoder
        return encoder(path[cut + 1:], event, timestamp, facts)
