"""
The soak's record of every file.

Each file gets an integer id when its producer starts it; its name is made
from the id (L{Ledger.name}), so an event maps back to its file by the name
alone.  Per file the ledger keeps, in flat arrays (a million files cost tens
of MiB, not hundreds): its section and style, when the producer began its
final step (C{ready}: just before the close, or the rename into place), when
that step was done (C{complete}), when it left its monitored path for good
(C{gone}: deleted by its producer, or swept away with its directory; a
consumer's deletion after the file was received ends no obligation and
leaves it "present"), when a consumer first received an event for it, and the earliest
C{event_timestamp} of those events.  Faults add their I{excluded} windows
(L{Ledger.window}).

Redis may lose what it acknowledged: a server killed and restarted empty,
a replica promoted before it had the master's last writes.  Before such a
fault the soak pauses the master's writes and reads its queues
(L{lost_with_redis}): the files named there were announced, and Redis, not
the observer, loses them.

The checker (L{soak.checker.Checker}, the ledger's base class) holds every
file to the guarantee at the end of the run: its module has the rule, and
what it makes of the files Redis lost.
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from collections.abc import Iterable, Sequence

from .checker import Checker, Window
from .kinds import STYLES, Section

NAN, INF = math.nan, math.inf
_STYLE = {name: i for i, name in enumerate(STYLES)}
_OURS = re.compile(r"\.?(f|d|x|skip-)(\d{9})")


class Ledger(Checker):
    """Every file the soak made, and what became of it (thread-safe)."""

    def __init__(self, sections: Sequence[Section]) -> None:
        self.sections = list(sections)
        self._lock = threading.Lock()
        self.section = array("H")
        self.style = array("B")
        self.ready = array("d")
        self.complete = array("d")
        self.gone = array("d")
        self.received = array("d")
        self.stamp = array("d")
        self.stamp_live = array("d")
        self.pause = array("d")
        #: when Redis last lost this file's announcement (see L{lost_with_redis})
        self.lost: dict[int, float] = {}
        #: sub-directory of the files of style "nested" and "moved"
        self.subdir: dict[int, str] = {}
        #: the sections whose duplicates are judged (C{announce_once}, L{soak.once})
        self.once = {s.index for s in sections if s.kind.once}
        #: the events of their files after the first: [(file, when received, event)]
        self.repeats: list[tuple[int, float, str]] = []
        #: their files' announcements Redis may have lost (L{lost_with_redis}, L{once_lost}): times
        self.losses: dict[int, list[float]] = {}
        #: spans between two readings of a master whose history was cut
        #: between them (L{history_cut}): (earlier reading, later reading)
        self.cuts: list[tuple[float, float]] = []
        self._present: list[set[int]] = [set() for _ in sections]
        self._present_lock = [threading.Lock() for _ in sections]
        self.windows: list[Window] = []
        #: events whose name is not the final name of one of this section's
        #: announceable files: [(time, section, name, why)]
        self.unexpected: list[tuple[float, str, str, str]] = []

    # -- names -----------------------------------------------------------------

    def name(self, i: int) -> str:
        """The final name of file C{i}."""
        style = STYLES[self.style[i]]
        if style == "entry":
            return f"d{i:09d}"
        if style == "ignored":
            # Half fail an ignore pattern, half fail every "only" pattern.
            return f"skip-{i:09d}" if i % 2 else f"x{i:09d}"
        if style == "odd":
            # A space, a non-ASCII letter, a byte that is not UTF-8 (PEP 383)
            # and a newline.
            return f"f{i:09d} \u00e9\udcff\n.x"
        return f"f{i:09d}"

    def staging_name(self, i: int) -> str:
        """Where a file of style "staged" is written before its rename."""
        name = self.name(i)
        kind = self.sections[self.section[i]].kind
        return f".{name}.part" if kind.staging == "hidden" else f"{name}.working"

    def relative(self, i: int) -> str:
        """The path of file C{i} under its section's directory."""
        sub = self.subdir.get(i)
        return f"{sub}/{self.name(i)}" if sub else self.name(i)

    # -- what producers, consumers and faults report ---------------------------------

    def new(self, section: int, style: str, subdir: str | None = None) -> int:
        """A file is being started: its id."""
        with self._lock:
            i = len(self.section)
            self.section.append(section)
            self.style.append(_STYLE[style])
            for column in (self.ready, self.complete, self.received, self.stamp, self.stamp_live):
                column.append(NAN)
            self.gone.append(INF)
            self.pause.append(0.0)
        if subdir:
            self.subdir[i] = subdir
        with self._present_lock[section]:
            self._present[section].add(i)
        return i

    def completed(self, i: int, ready: float, complete: float | None, pause: float = 0.0) -> None:
        """
        The final step of file C{i} began at C{ready} and ended at
        C{complete} (None: it failed, or the file was abandoned).

        @param pause: the longest time its writer left it unmodified before
            C{ready}: a C{settle} shorter than that may announce it before
            it is complete, as documented, and that is not early.
        """
        self.pause[i] = pause
        self.ready[i] = ready
        if complete is not None:
            self.complete[i] = complete

    def removed(self, i: int, when: float, consumed: bool = False) -> None:
        """
        File C{i} was deleted from its monitored path.

        @param consumed: by a consumer, after it was received: that ends no
            obligation (the file counts as present to the end).
        """
        section = self.section[i]
        with self._present_lock[section]:
            self._present[section].discard(i)
            if not consumed and when < self.gone[i]:
                self.gone[i] = when

    def swept(self, section: int, when: float, subdir: str | None = None) -> int:
        """
        Every file of C{section} (in C{subdir} and below only, if given)
        went with its directory; how many.
        """
        with self._present_lock[section]:
            if subdir is None:
                gone = self._present[section]
                self._present[section] = set()
            else:
                gone = {i for i in self._present[section] if _under(self.subdir.get(i), subdir)}
                self._present[section] -= gone
        for i in gone:
            if when < self.gone[i]:
                self.gone[i] = when
        return len(gone)

    def moved(self, section: int, old: str, new: str) -> int:
        """
        The sub-directory C{old} of C{section} was renamed C{new}, within
        the tree: its files (at any depth) are there now; how many.
        """
        count = 0
        with self._present_lock[section]:
            for i in self._present[section]:
                sub = self.subdir.get(i)
                if _under(sub, old):
                    assert sub is not None
                    self.subdir[i] = new + sub[len(old):]
                    count += 1
        return count

    def present(self, section: int) -> int:
        """How many files of C{section} are in its directory (or being written)."""
        return len(self._present[section])

    def window(self, start: float, end: float, section: int | None, why: str) -> None:
        """No file is due on account of [C{start}, C{end} + L{soak.checker.RECOVERY})."""
        with self._lock:
            self.windows.append(Window(start, end, section, why))

    def receive(self, section: int, filename: str, stamp: float, now: float, event: str = "created") -> int | None:
        """
        A consumer of C{section} received an event for C{filename}.

        @param stamp: its C{event_timestamp}; @param event: its C{event}.

        @return: the file's id when this is its first event (the consumer
            may then delete it), else None.
        """
        base = filename.rsplit("/", 1)[-1]
        match = _OURS.match(base)
        i = int(match.group(2)) if match else -1
        why = None
        if not 0 <= i < len(self.section):
            why = "not a file of the soak"
        elif self.section[i] != section:
            why = f"a file of [{self.sections[self.section[i]].name}]"
        elif base != self.name(i):
            why = "not the file's final name"
        elif STYLES[self.style[i]] == "ignored":
            why = "its section's filters refuse it"
        if why is not None:
            self.refused(section, filename, now, why)
            return None
        if not stamp >= self.stamp[i]:  # also when none yet (NaN)
            self.stamp[i] = stamp
        if event == "created" and not stamp >= self.stamp_live[i]:
            self.stamp_live[i] = stamp
        if self.received[i] == self.received[i]:
            if section in self.once:
                with self._lock:
                    self.repeats.append((i, now, event))
            return None
        self.received[i] = now
        return i

    def refused(self, section: int, filename: str, now: float, why: str) -> None:
        """An event of C{section} for C{filename} that should not have been, and C{why}."""
        with self._lock:
            self.unexpected.append((now, self.sections[section].name, filename, why))

    def lost_with_redis(self, names: Iterable[tuple[int, str]], when: float) -> int:
        """
        The queues of a Redis about to lose its data held these
        C{(section, name)}: announced, they are lost by Redis at C{when}
        (see the module docstring).  How many of them are files of the soak.
        """
        count = 0
        for i in self._files(names):
            self.lost[i] = when
            count += 1
        return count

    def once_lost(self, names: Iterable[tuple[int, str]], when: float) -> int:
        """
        Redis may lose, at C{when}, the announcements (queued events, or
        fields of the record) of these C{(section, path)} of sections that
        announce once: a duplicate of such a file is explained
        (L{soak.once}).  How many of them are files of the soak.
        """
        count = 0
        with self._lock:
            for i in self._files(names):
                if self.section[i] in self.once:
                    self.losses.setdefault(i, []).append(when)
                    count += 1
        return count

    def history_cut(self, since: float, until: float) -> None:
        """
        Redis lost writes made after C{since} (a reading of the master) and
        before C{until} (a reading of its successor, which does not carry
        on its history: L{soak.record_watch}).  Which ones is unknown.
        """
        with self._lock:
            self.cuts.append((since, until))

    def _files(self, names: Iterable[tuple[int, str]]) -> Iterable[int]:
        """The files of the soak among C{(section, path)}."""
        for section, filename in names:
            match = _OURS.match(filename.rsplit("/", 1)[-1])
            i = int(match.group(2)) if match else -1
            if 0 <= i < len(self.section) and self.section[i] == section:
                yield i

    # -- progress ----------------------------------------------------------------

    def waiting(self, among: Iterable[int] | None = None) -> list[int]:
        """
        Files complete, present, announceable and not received yet.

        @param among: look at these files only (the last answer, once no new
            file can come: a million files are not looked at every second).
        """
        ignored = _STYLE["ignored"]
        comp, rec, gone, style = self.complete, self.received, self.gone, self.style
        return [i for i in (range(len(self.section)) if among is None else among)
                if rec[i] != rec[i] and comp[i] == comp[i] and gone[i] == INF and style[i] != ignored]

    def all_ids(self) -> Iterable[int]:
        return range(len(self.section))


def _under(sub: str | None, top: str) -> bool:
    """Whether the sub-directory C{sub} is C{top} or below it."""
    return sub is not None and (sub == top or sub.startswith(top + "/"))
