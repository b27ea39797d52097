"""
The duplicates of a section that announces once (C{announce_once}).

Elsewhere duplicates are counted, not judged: at least once allows them.
With C{announce_once} a listing announces only what was never announced, so
a file announced twice needs a reason.  docs/design.md ("What can still be
announced twice") gives the reasons a fault of the soak can bring about:

 - I{Redis lost the announcement}: an event, and its record, that Redis
   acknowledged and then lost (a master killed and restarted empty, a
   replica promoted before it had the master's last writes); the next
   listing announces the file again.  The soak knows it three ways:
    - before each Redis kill, failover and single-server outage it reads
      the master's queues and records, and its replica's
      (L{soak.process_faults.pause_and_read}); what the master holds and the
      replica does not may be lost (L{soak.ledger.Ledger.once_lost}).  Each
      such loss of a file explains one duplicate of it, received within
      L{EXPLAIN_WITHIN} seconds after the loss;
    - every second it reads the master's records and replication history
      (L{soak.record_watch}); when a master does not carry on the history
      of the previous reading, the fields of that reading it lacks are
      losses as above, and a duplicate of a file first received between
      the two readings, and received again within L{EXPLAIN_WITHIN} after
      the later one, is explained (L{soak.ledger.Ledger.cuts}): this is
      how a loss long after its fault is seen (two failovers in a row,
      the second onto a node that had not caught up with the first);
    - what was written after that reading, or to a master that is
      replaced without one (a Redis SIGSTOPped past the Sentinels'
      C{down-after-milliseconds} is failed over; its successor may have
      been promoted before it had caught up): a duplicate received while a
      fault that can lose writes (L{LOSING}) was on, or within
      L{EXPLAIN_WITHIN} after it ended, of a file first received (its
      write acknowledged) no earlier than L{NEW_SLACK} before that fault
      began and no later than L{NEW_SLACK} after it ended;
 - I{a listing raced the kernel's event of a new file}: a listing pushed
   the file's event before the kernel's event for it was read, so the
   duplicate is the kernel's (C{"created"}) event.  Listings the soak
   causes are those of the faults in L{LISTING_FAULTS} (a restart, a
   reconnect, an overflow, a directory back, a section active again).  A
   C{"created"} duplicate received while such a fault of its section (or
   of the whole daemon) was on, or within L{EXPLAIN_WITHIN} seconds after
   it ended, is explained when its file was new at that fault's listing:
   complete (or abandoned) no earlier than L{NEW_SLACK} seconds before the
   fault began and no later than L{NEW_SLACK} seconds after it ended.

A listing's C{"exists"} after the file's event was delivered, with no loss
by Redis near, has no reason: that is what C{announce_once} prevents.  A
file present long before a fault (kept by its consumer, or waiting for its
deletion) announced again after it has none either.

Everything else is I{unexplained}.  The rule (L{OnceFindings.passed}): the
unexplained duplicates may be at most L{ALLOWANCE} of the section's files
(rounded down); within that allowance they need no reason, beyond it each
must have one.  The explained duplicates are reported, not judged.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from .ledger import Ledger

#: The share of a section's files that may be announced twice without a reason.
ALLOWANCE = 0.001
#: Seconds after a loss, or after the end of a fault, within which a
#: duplicate is laid at its door.
EXPLAIN_WITHIN = 60.0
#: A file complete this long before a fault began, or after it ended, was
#: not new at the listing the fault caused.
NEW_SLACK = 10.0
#: The faults after which the observer lists the sections they concern
#: (docs/design.md, "The delivery guarantee"): not an invalid reload (refused,
#: nothing changes), a worker's kill (not the observer's) or a sub-tree deleted.
LISTING_FAULTS = frozenset({
    "redis_kill", "redis_stop", "failover", "held_overflow", "observer_overflow", "observer_kill",
    "reload_changed", "dir_delete", "dir_rename", "dir_unreadable",
})
#: The faults that can lose writes Redis acknowledged, with one server (a
#: kill, and a long outage, which is a kill) and with a Sentinel set (the
#: master killed, failed over, or stopped long enough to be failed over).
LOSING = {False: frozenset({"redis_kill", "held_overflow"}),
          True: frozenset({"redis_kill", "failover", "redis_stop"})}


@dataclass
class OnceFindings:
    """One announce-once section's duplicates, explained or not (see the module docstring)."""

    section: str
    files: int
    duplicates: int = 0
    redis_lost: int = 0
    after_fault: int = 0
    unexplained: list[tuple[int, float, str]] = field(default_factory=list)
    #: duplicates that came from a listing (C{"exists"}), the rest are C{"created"}
    listed: int = 0
    #: the explained after a fault, by the fault (the earliest that explains each)
    by_fault: dict[str, int] = field(default_factory=dict)
    #: every explained duplicate: (file, when received, event, the reason)
    explained: list[tuple[int, float, str, str]] = field(default_factory=list)

    @property
    def allowance(self) -> int:
        """How many unexplained duplicates pass: L{ALLOWANCE} of the files, rounded down."""
        return int(self.files * ALLOWANCE)

    @property
    def passed(self) -> bool:
        return len(self.unexplained) <= self.allowance

    def summary(self) -> dict[str, Any]:
        """The figures of the JSON line."""
        return {"files": self.files, "duplicates": self.duplicates, "listed": self.listed,
                "explained": {"redis_lost": self.redis_lost, "after_fault": self.after_fault,
                              "by_fault": self.by_fault},
                "unexplained": len(self.unexplained), "allowance": self.allowance, "passed": self.passed}


def judge(ledger: Ledger, section: int, files: int, sentinel: bool) -> OnceFindings:
    """
    Explain the duplicates of C{section} (a section of L{Ledger.once}),
    which completed C{files} files.

    @param sentinel: Redis was a Sentinel set (which faults lose writes: L{LOSING}).
    """
    found = OnceFindings(ledger.sections[section].name, files)

    def concerning(names: frozenset[str]) -> tuple[list[tuple[float, float, str]], list[float]]:
        chosen = sorted((w.start, w.end, w.why) for w in ledger.windows
                        if w.why in names and (w.section is None or w.section == section))
        return chosen, [start for start, _end, _why in chosen]

    listing, losing = concerning(LISTING_FAULTS), concerning(LOSING[sentinel])
    used: dict[int, int] = {}  # per file: how many of its losses explained a duplicate
    for i, when, event in sorted(r for r in ledger.repeats if ledger.section[r[0]] == section):
        found.duplicates += 1
        found.listed += event == "exists"
        if _lost_before(ledger.losses.get(i, ()), used, i, when):
            found.redis_lost += 1
            found.explained.append((i, when, event, "lost by Redis (read before the fault)"))
        elif (cut := _cut_between(ledger.cuts, ledger.received[i], when)) is not None:
            found.redis_lost += 1
            since, until = cut
            found.explained.append((i, when, event, f"lost by Redis (history cut between {since:.2f} and {until:.2f})"))
        elif (why := _around_fault(ledger.received[i], when, *losing)) is not None:
            found.redis_lost += 1
            found.explained.append((i, when, event, f"lost by Redis ({why})"))
        elif event == "created" and (why := _around_fault(_file_time(ledger, i), when, *listing)) is not None:
            found.after_fault += 1
            found.by_fault[why] = found.by_fault.get(why, 0) + 1
            found.explained.append((i, when, event, why))
        else:
            found.unexplained.append((i, when, event))
    return found


def _lost_before(losses: Any, used: dict[int, int], i: int, when: float) -> bool:
    """Whether a loss of file C{i} not used yet came within L{EXPLAIN_WITHIN} before C{when} (and use it)."""
    times = sorted(losses)
    k = used.get(i, 0)
    while k < len(times) and times[k] < when - EXPLAIN_WITHIN:
        k += 1  # too long ago: it explains nothing any more
    if k < len(times) and times[k] <= when:
        used[i] = k + 1
        return True
    used[i] = k
    return False


def _cut_between(cuts: list[tuple[float, float]], received: float, when: float) -> tuple[float, float] | None:
    """
    The cut of Redis's history (L{soak.record_watch}) between whose two
    readings the file was first received, if a duplicate received at
    C{when} came within L{EXPLAIN_WITHIN} of its end (None: none).
    """
    for since, until in cuts:
        if since <= received <= until and since <= when <= until + EXPLAIN_WITHIN:
            return since, until
    return None


def _file_time(ledger: Ledger, i: int) -> float:
    """When file C{i} was complete, or abandoned."""
    complete = ledger.complete[i]
    return complete if complete == complete else ledger.ready[i]


def _around_fault(new: float, when: float, faults: list[tuple[float, float, str]],
                  starts: list[float]) -> str | None:
    """
    The first of C{faults} that was on, or ended within L{EXPLAIN_WITHIN},
    at C{when}, around which C{new} falls: no earlier than L{NEW_SLACK}
    before it began, no later than L{NEW_SLACK} after it ended (None: none).
    """
    for start, end, why in faults[:bisect.bisect_right(starts, when)]:
        if when <= end + EXPLAIN_WITHIN and start - NEW_SLACK <= new <= end + NEW_SLACK:
            return why
    return None
