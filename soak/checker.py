"""
The soak's checker: the rule every file of the L{soak.ledger.Ledger} is
held to (L{Checker}, a base class of the ledger) and what it found
(L{Findings}).

Faults record I{excluded} windows (L{Window}): a whole-daemon window (the
observer or Redis down or stopped, a reload) or a section's (its directory
renamed away, deleted, unreadable, or its section inactive), each followed
by L{RECOVERY} seconds.  The checker's rule: a file is I{due} when, outside
every window that applies to it, it was present and complete for a
continuous stretch of at least its kind's grace period
(L{soak.kinds.BASE_GRACE} plus C{settle} and C{poll_interval}).  A due file
that no consumer received is I{unannounced}.  A file deleted by its
producer before it was complete is never due; one deleted by a consumer
was received first.

A file whose announcement Redis lost (L{soak.ledger.Ledger.lost_with_redis})
is due again only for a stretch of presence after the fault (its window
and the recovery): the observer's promise for it is its insurance listing
once Redis is back.  One deleted before that is counted as I{lost by
Redis}, not unannounced.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .kinds import ALL, STYLES, Section

#: Seconds after a fault window ends before the observer must be back to
#: normal (reconnected, re-watched, listed).
RECOVERY = 2.0
#: Seconds an announcement of a "closed" kind may precede the threshold:
#: file times (mtime) come from the kernel's coarse clock.
EARLY_TOLERANCE = 0.02
#: A writer's pause this close to C{settle} may already let the file settle.
PAUSE_TOLERANCE = 0.05

INF = math.inf


@dataclass
class Window:
    """A fault window: no file is due on account of this time."""

    start: float
    end: float
    section: int | None  # None: every section
    why: str


@dataclass
class Findings:
    """What the checker found (see L{Checker.check})."""

    files: int = 0
    due: int = 0
    unannounced: list[int] = field(default_factory=list)
    early: list[int] = field(default_factory=list)
    received: int = 0
    #: announced, then lost by Redis, and gone before the insurance listing
    lost_by_redis: int = 0
    #: per section (by index): files completed, due, received
    section_files: list[int] = field(default_factory=list)
    section_due: list[int] = field(default_factory=list)
    section_received: list[int] = field(default_factory=list)


class Checker:
    """
    The checker's half of the L{soak.ledger.Ledger}: every file against the
    guarantee (see the module docstring).

    It reads the ledger's columns, declared here; the ledger fills them.
    """

    sections: list[Section]
    section: array[int]
    style: array[int]
    ready: array[float]
    complete: array[float]
    gone: array[float]
    received: array[float]
    stamp: array[float]
    stamp_live: array[float]
    pause: array[float]
    lost: dict[int, float]
    windows: list[Window]
    relative: Callable[[int], str]

    def excluded(self, section: int) -> tuple[list[float], list[float]]:
        """The merged windows that apply to C{section}: (starts, ends), sorted."""
        spans = sorted((w.start, w.end + RECOVERY) for w in self.windows
                       if w.section is None or w.section == section)
        starts: list[float] = []
        ends: list[float] = []
        for start, end in spans:
            if ends and start <= ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        return starts, ends

    @staticmethod
    def longest_stretch(a: float, b: float, starts: list[float], ends: list[float], enough: float) -> float:
        """The longest part of [a, b) outside the windows (stops once C{enough})."""
        best, cursor = 0.0, a
        k = bisect.bisect_right(ends, a)
        while k < len(starts) and starts[k] < b:
            best = max(best, starts[k] - cursor)
            if best >= enough:
                return best
            cursor = max(cursor, ends[k])
            k += 1
        return max(best, b - cursor)

    def due(self, i: int, end: float, windows: tuple[list[float], list[float]], since: float = -INF) -> bool:
        """
        Whether file C{i} had to be announced by C{end} (see the module
        docstring), counting its presence after C{since} only.
        """
        a = max(self.complete[i], since)
        if a != a or STYLES[self.style[i]] == "ignored":
            return False
        b = min(self.gone[i], end)
        grace = self.sections[self.section[i]].kind.grace()
        if b - a < grace:
            return False
        return self.longest_stretch(a, b, *windows, grace) >= grace

    def check(self, end: float) -> Findings:
        """Every file against the guarantee, as of C{end} (the final SIGTERM)."""
        found = Findings(section_files=[0] * len(self.sections), section_due=[0] * len(self.sections),
                         section_received=[0] * len(self.sections))
        windows = [self.excluded(s.index) for s in self.sections]
        early_after = [s.kind.settle() - EARLY_TOLERANCE if s.kind.early else None for s in self.sections]
        stamps = [self.stamp if s.kind.early == ALL else self.stamp_live for s in self.sections]
        comp, rec, ready = self.complete, self.received, self.ready
        for i in range(len(self.section)):
            section = self.section[i]
            received = rec[i] == rec[i]
            found.received += received
            found.section_received[section] += received
            if comp[i] == comp[i]:
                found.files += 1
                found.section_files[section] += 1
            if self.due(i, end, windows[section]):
                if not received and i in self.lost and not self.due(i, end, windows[section], self.lost[i]):
                    found.lost_by_redis += 1
                    continue
                found.due += 1
                found.section_due[section] += 1
                if not received:
                    found.unannounced.append(i)
            delay = early_after[section]
            # The stamp is taken before the push: an event stamped after the
            # threshold cannot have been received before it.
            first = stamps[section][i]
            if delay is not None and first == first and not first >= ready[i] + delay:
                settle = self.sections[section].kind.settle()
                if not (settle and self.pause[i] >= settle - PAUSE_TOLERANCE):
                    found.early.append(i)
        return found

    def describe(self, i: int, t0: float, end: float) -> dict[str, Any]:
        """File C{i}'s story, times in seconds since the start of the run."""
        section = self.sections[self.section[i]]

        def at(t: float) -> float | None:
            return None if t != t or t == INF else round(t - t0, 3)

        starts, ends = self.excluded(section.index)
        a, b = self.complete[i], min(self.gone[i], end)
        near = [f"{w.why} [{w.start - t0:.2f}, {w.end - t0:.2f}]" for w in self.windows
                if (w.section is None or w.section == section.index) and w.start < b + 1 and w.end + RECOVERY > a - 1]
        return {
            "id": i, "name": self.relative(i), "section": section.name, "kind": section.kind.name,
            "style": STYLES[self.style[i]], "ready": at(self.ready[i]), "complete": at(a),
            "gone": at(self.gone[i]), "received": at(self.received[i]), "first_stamp": at(self.stamp[i]),
            "first_created_stamp": at(self.stamp_live[i]), "longest_pause": round(self.pause[i], 3),
            "longest_stretch": round(self.longest_stretch(a, b, starts, ends, INF), 3) if a == a else None,
            "windows": near,
        }
