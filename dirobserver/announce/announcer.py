"""
How one section's names become events in its queue.

An L{Announcer} holds what every announcing of a section needs: its queue
in the writer (L{dirobserver.redis.writer.RedisWriter.queue}), the encoder of
the queue's shape (JSON for a list, fields for a stream; in a tree, one per
sub-directory: L{dirobserver.announce.event.TreeEncoder}), and the source the
writer asks to list again when it could not hold the events (the section's
monitor).  The monitor hands it the names a section announces as they
appear (L{Announcer.created_events}); the complete files, when the settle
table or the events say so (L{Announcer.announce}); the listings use its
encoder for their C{"exists"} events.
"""

from __future__ import annotations

from collections.abc import Iterable

from dirobserver.announce.event import CREATED, TreeEncoder, decode_name
from dirobserver.config.settings import SectionSettings
from dirobserver.redis.queue_types import Encode, queue_type_for
from dirobserver.redis.writer import RedisWriter, Relistable
from dirobserver.sources.interface import Batch
from dirobserver.sources.masks import IN_ISDIR


class Announcer:
    """
    Pushes one section's events to its queue.

    @ivar encode: how a name, its event and a time become what the queue holds.
    """

    def __init__(self, section: SectionSettings, writer: RedisWriter, source: Relistable) -> None:
        """
        @param source: what the writer asks to list again when it could not
            hold this section's events (the section's monitor).
        """
        self._section = section.name
        self._accepts = section.name_filter  # in a tree, names are relative paths
        self._subdirectories = section.subdirectories
        self._writer = writer
        self._source = source
        self._queue = writer.queue(section.queue, section.counter, queue_type_for(section))
        make = self._queue.shape.encoder
        self.encode: Encode = (TreeEncoder(section.directory, make).encode if section.recursive
                               else make(section.directory))

    def created_events(self, batch: Batch, read_time: float) -> None:
        """C{announce = created}, no settle: a new name is announced at once."""
        subdirectories, accepts = self._subdirectories, self._accepts
        encode, decode = self.encode, decode_name
        payloads = []
        for name, mask in batch:
            if mask & IN_ISDIR and not subdirectories:
                continue
            text = decode(name)
            if accepts(text):
                payloads.append(encode(text, CREATED, read_time))
        if payloads:
            self._writer.push_many(
                self._queue, payloads, self._source, section=self._section, event=CREATED,
                read_time=read_time,
            )

    def announce(self, items: Iterable[tuple[str, str]], when: float) -> None:
        """Push C{(text, event)} pairs, stamped C{when}."""
        encode = self.encode
        by_event: dict[str, list[bytes]] = {}
        for text, event in items:
            by_event.setdefault(event, []).append(encode(text, event, when))
        for event, payloads in by_event.items():
            # Delivery time counts from when the file became announceable.
            self._writer.push_many(
                self._queue, payloads, self._source, section=self._section, event=event,
                read_time=when,
            )
