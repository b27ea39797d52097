"""
What Redis lost of the records of the sections that announce once, read
as it happens.

The readings before a fault (L{soak.process_faults.pause_and_read}) see what a
master holds and its replica lacks at that moment.  They miss what a later
failover loses: a master stopped past C{down-after-milliseconds} and
replaced, and then, seconds later, the whole set paused and failed over
again onto a node that had not caught up; records written minutes before
vanish, the next listing announces those files again as it should, and the
soak had no reason for the duplicates.

L{RecordWatch} reads the master every L{EVERY} seconds: each record
(C{HGETALL}), then its replication history (C{INFO replication}: its
C{master_replid} and offset, after the records, so that every field read
was written at or before that offset).  A master that carries on the
history of the previous reading (the same replication ID at an offset as
far, or a promoted replica whose C{master_replid2} is the previous ID and
whose C{second_repl_offset} is past it) lost nothing of it.  Otherwise the
history was cut between the two readings:

 - every field of the previous reading that the new master lacks, or holds
   with another value (written again since: the duplicate itself), is a
   loss of that file (L{soak.ledger.Ledger.once_lost}) at the time of the
   previous reading;
 - what was written after the previous reading is unknown: the cut is
   kept as a window (L{soak.ledger.Ledger.history_cut}), and a duplicate of
   a file first received within it is laid at its door (L{soak.once}).

The replication ID says nothing of which writes were lost, only that some
may have been: a history carried on never explains a duplicate.  A master
also takes a new ID when its first replica connects after none (it had no
backlog): that counts as a cut too, the safe side for an explanation, and
does not happen in the Sentinel set, whose master always has its replica.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .kinds import Section
from .ledger import Ledger

#: Seconds between two readings of the master.
EVERY = 1.0


class Reading:
    """One reading of the master: when, its history, and the records."""

    def __init__(self, at: float, info: dict[str, Any], records: list[dict[bytes, bytes]]) -> None:
        self.at = at
        self.replid = str(info.get("master_replid", ""))
        self.offset = int(info.get("master_repl_offset", 0))
        self.replid2 = str(info.get("master_replid2", ""))
        #: the first offset of this ID's own history (before it: replid2's)
        self.second_offset = int(info.get("second_repl_offset", -1))
        self.records = records

    def carries_on(self, before: Reading) -> bool:
        """Whether this master's history holds everything of C{before}'s reading."""
        if self.replid == before.replid:
            return self.offset >= before.offset
        return self.replid2 == before.replid and self.second_offset - 1 >= before.offset


class RecordWatch(threading.Thread):
    """
    Reads the records of C{sections} (those with C{announce_once}) on the
    master every L{EVERY} seconds until L{stop} (see the module docstring).

    @ivar readings: readings made; @ivar cuts: histories found cut.
    """

    def __init__(self, sections: list[Section], ledger: Ledger, master_client: Any) -> None:
        """@param master_client: a function giving a client of the master now."""
        super().__init__(name="record-watch", daemon=True)
        self.sections = [s for s in sections if s.kind.once]
        self.ledger = ledger
        self.master_client = master_client
        self.readings = 0
        self.cuts = 0
        self.failed: BaseException | None = None
        self._stop_event = threading.Event()
        self._last: Reading | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            while self.sections and not self._stop_event.wait(EVERY):
                reading = self._read()
                if reading is not None:
                    self.compare(reading)
        except BaseException as e:  # reported by the soak, as a consumer's
            self.failed = e

    def _read(self) -> Reading | None:
        """A reading of the master, or None (unreachable, paused, not a master yet)."""
        try:
            client = self.master_client()
        except Exception:
            return None
        try:
            pipe = client.pipeline(transaction=False)
            for section in self.sections:
                pipe.hgetall(section.record)
            pipe.info("replication")
            *records, info = pipe.execute()
        except Exception:
            return None
        finally:
            client.close()
        if info.get("role") != "master":
            return None  # the Sentinels name a node not promoted yet
        return Reading(time.time(), info, records)

    def compare(self, reading: Reading) -> None:
        """Take C{reading} as the latest, after noting what the history lost since the last one."""
        before, self._last = self._last, reading
        self.readings += 1
        if before is None or reading.carries_on(before):
            return
        self.cuts += 1
        self.ledger.history_cut(before.at, reading.at)
        lost = [(section.index, field.decode("utf-8", "surrogateescape"))
                for section, old, new in zip(self.sections, before.records, reading.records, strict=True)
                for field, value in old.items() if new.get(field) != value]
        if lost:
            self.ledger.once_lost(lost, before.at)
