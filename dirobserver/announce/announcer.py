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

A section whose events identify their files (C{announce_once}, or
C{extra_fields}) looks at each file as its event is made
(L{dirobserver.announce.file_facts}): the event gets its fields, and with
C{announce_once} the writer gets its record entry, written with it.
"""

from __future__ import annotations

from collections.abc import Iterable

from dirobserver.announce.event import CREATED, EXISTS, TreeEncoder, decode_name, encode_name
from dirobserver.announce.file_facts import FileFacts
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
        self.queue = writer.queue(section.queue, section.counter, queue_type_for(section),
                                  section.record_key)
        shape, fields = self.queue.shape, section.extra_fields

        def make(directory: str) -> Encode:
            return shape.encoder(directory, fields)

        self.encode: Encode = (TreeEncoder(section.directory, make).encode if section.recursive
                               else make(section.directory))
        #: looks at the files (None: the events do not identify them)
        self.facts = FileFacts(section) if section.record_key or fields else None

    def created_events(self, batch: Batch, read_time: float) -> None:
        """C{announce = created}, no settle: a new name is announced at once."""
        if self.facts is not None:
            self._identified(((name, CREATED) for name, mask in batch
                              if self._subdirectories or not mask & IN_ISDIR), read_time)
            return
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
                self.queue, payloads, self._source, section=self._section, event=CREATED,
                read_time=read_time,
            )

    def announce(self, items: Iterable[tuple[str, str]], when: float) -> None:
        """Push C{(text, event)} pairs, stamped C{when}."""
        if self.facts is not None:
            # Filtered already (the table holds accepted names only).
            self._identified(((encode_name(text), event) for text, event in items), when,
                             filtered=True)
            return
        encode = self.encode
        by_event: dict[str, list[bytes]] = {}
        for text, event in items:
            by_event.setdefault(event, []).append(encode(text, event, when))
        for event, payloads in by_event.items():
            # Delivery time counts from when the file became announceable.
            self._writer.push_many(
                self.queue, payloads, self._source, section=self._section, event=event,
                read_time=when,
            )

    def _identified(self, items: Iterable[tuple[bytes, str]], when: float, filtered: bool = False) -> None:
        """
        Push C{(name, event)} pairs, stamped C{when}, each with the facts of
        its file and (C{announce_once}) its record entry.
        """
        facts = self.facts
        assert facts is not None
        # This runs for every file of a burst: the names are sorted out
        # first (by event), then each group is looked at, encoded and
        # recorded in loops of its own, each a comprehension where it can be.
        accepts, encode = self._accepts, self.encode
        by_event: dict[str, tuple[list[bytes], list[str]]] = {}
        last_event: str | None = None
        names: list[bytes] = []
        texts: list[str] = []
        for name, event in items:
            text = name.decode("utf-8", "surrogateescape")  # decode_name, inlined
            if not filtered and not accepts(text):
                continue
            if event != last_event:
                names, texts = by_event.setdefault(event, ([], []))
                last_event = event
            names.append(name)
            texts.append(text)
        recording = facts.record is not None
        for event, (names, texts) in by_event.items():
            looks = facts.look_all(names)
            if facts.fields:
                describe = facts.facts
                payloads = [encode(text, event, when, describe(name, seen))
                            for name, text, seen in zip(names, texts, looks, strict=True)]
            else:
                payloads = [encode(text, event, when) for text in texts]
            self._writer.push_many(
                self.queue, payloads, self._source, section=self._section, event=event,
                read_time=when, entries=facts.entries(names, looks, when) if recording else None,
            )

    def exists(self, name: bytes, when: float, look: tuple | None = None) -> None:
        """
        Push the C{"exists"} event of one file a listing found (its name
        filtered already), with its facts (C{look}: as looked at by the
        listing) and record entry when the section's events identify files.
        """
        facts = self.facts
        if facts is None:
            self._writer.push(self.queue, self.encode(decode_name(name), EXISTS, when), self._source,
                              self._section, EXISTS, when)
            return
        seen = facts.look(name) if look is None else look
        self._writer.push(
            self.queue, self.encode(decode_name(name), EXISTS, when, facts.facts(name, seen)), self._source,
            self._section, EXISTS, when, facts.entry(name, seen, when) if facts.record is not None else None,
        )
