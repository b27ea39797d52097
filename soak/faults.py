"""
The soak's faults: what they act on (L{Soak}), their table (L{FAULTS}), the
lanes that run them (L{Lane}) and the fault timeline (L{Timeline}).

Faults run in two lanes, each a thread that waits a random gap, runs one
fault to its end, and records it (L{Timeline}) with the window during which
no file is due on its account (L{soak.ledger.Ledger.window}):

 - the I{process} lane hits the daemon as a whole (Redis SIGKILLed and
   restarted, SIGSTOPped past C{timeout}; the observer SIGSTOPped while a
   burst overflows the kernel queue, SIGKILLed and restarted, reloaded with a
   changed or an invalid configuration; C{max_held_events} exceeded during
   a long outage; with a Sentinel set, a forced failover, and the Redis
   kill is the master's, see L{soak.servers}; the worker of the worker's
   section SIGKILLed and restarted, see L{soak.working}); its windows cover
   every section (L{soak.process_faults});
 - the I{directory} lane hits one section's directory (deleted and
   recreated, renamed away and back, made unreadable; in a tree, a
   sub-directory deleted); its windows cover that section
   (L{soak.directory_faults}).

The lanes are independent, so a directory fault may overlap a process fault
(an overflow while a directory is unreadable, a restart while it is
renamed away).  A fault is one row of L{FAULTS}: its lane, its weight, and
the function that does it and returns a line of detail.  The observer the
faults hit is L{soak.daemon.Daemon}.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .daemon import Daemon
from .directory_faults import dir_delete, dir_rename, dir_unreadable, subtree_delete
from .kinds import ObserverConfig, Section
from .ledger import Ledger
from .process_faults import (
    failover,
    held_overflow,
    observer_kill,
    observer_overflow,
    redis_kill,
    redis_stop,
    reload_changed,
    reload_invalid,
)
from .working import worker_kill


@dataclass
class Soak:
    """What the faults act on."""

    redis: Any  # soak.servers.Single or SentinelSet
    daemon: Daemon
    config: ObserverConfig
    ledger: Ledger
    sections: list[Section]
    producers: list[Any]
    timeline: Timeline
    queued_events: int
    worker: Any = None  # soak.working.Worker, when a section has one

    def burst(self, section: Section, count: int) -> int:
        return self.producers[section.index].burst(count)


class Timeline:
    """Every fault with its time, printed as it happens."""

    def __init__(self, t0: float, say: Callable[[str], None]) -> None:
        self.t0, self.say = t0, say
        self.faults: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, start: float, end: float, name: str, section: str | None, detail: str) -> None:
        row = {"t": round(start - self.t0, 2), "seconds": round(end - start, 2), "fault": name,
               "section": section, "detail": detail}
        with self._lock:
            self.faults.append(row)
        self.say(f"fault {row['t']:8.2f}s +{row['seconds']:.2f}s {name}"
                 + (f" [{section}]" if section else "") + f": {detail}")

    def lines(self) -> list[str]:
        return [f"{f['t']:9.2f}s +{f['seconds']:5.2f}s  {f['fault']:<18} {f['section'] or '':<10} {f['detail']}"
                for f in sorted(self.faults, key=lambda f: f["t"])]


@dataclass(frozen=True)
class Fault:
    """One kind of fault: its lane, how often it is chosen, what it does."""

    name: str
    lane: str
    weight: float
    run: Callable[[Soak, random.Random, Section | None], str]
    sentinel: bool = False  # only with a Sentinel set
    styles: tuple[str, ...] = ()  # only on sections whose files come in one of these styles

    def applies(self, section: Section) -> bool:
        if self.lane == DIRECTORY and section.kind.worker:
            return False  # see SectionKind.worker
        return not self.styles or any(style in section.kind.styles for style in self.styles)


PROCESS, DIRECTORY = "process", "directory"
FAULTS: tuple[Fault, ...] = (
    Fault("redis_kill", PROCESS, 3, redis_kill),
    Fault("redis_stop", PROCESS, 2, redis_stop),
    Fault("observer_overflow", PROCESS, 2, observer_overflow),
    Fault("observer_kill", PROCESS, 3, observer_kill),
    Fault("reload_changed", PROCESS, 3, reload_changed),
    Fault("reload_invalid", PROCESS, 2, reload_invalid),
    Fault("held_overflow", PROCESS, 1.5, held_overflow),
    Fault("failover", PROCESS, 2, failover, sentinel=True),
    Fault("dir_delete", DIRECTORY, 1, dir_delete),
    Fault("dir_rename", DIRECTORY, 1, dir_rename),
    Fault("dir_unreadable", DIRECTORY, 1, dir_unreadable),
    Fault("subtree_delete", DIRECTORY, 1, subtree_delete, styles=("nested",)),
    Fault("worker_kill", PROCESS, 2, worker_kill),
)


class Lane(threading.Thread):
    """
    One lane of faults (see the module docstring), until C{halt}.

    A process started by a thread gets its death signal (C{PR_SET_PDEATHSIG})
    when that I{thread} ends: so once its faults are over (L{done}), a lane's
    thread stays until C{release}, which comes after the final SIGTERM.
    """

    def __init__(self, lane: str, soak: Soak, seed: int, mean_gap: float, halt: threading.Event,
                 release: threading.Event, only: set[str] | None = None) -> None:
        """@param only: names of the faults to choose from (default: all of the lane)."""
        super().__init__(name=f"faults-{lane}", daemon=True)
        self.lane, self.soak, self.rng = lane, soak, random.Random(seed)
        self.mean_gap, self.halt, self.release = mean_gap, halt, release
        self.done = threading.Event()
        self.faults = [f for f in FAULTS if f.lane == lane and (only is None or f.name in only)
                       and (soak.redis.sentinel or not f.sentinel)
                       and (lane == PROCESS or any(f.applies(x) for x in soak.sections))
                       and (f.run is not worker_kill or soak.worker is not None)]
        if not any(x.kind.kernel_queue for x in soak.sections):
            self.faults = [f for f in self.faults if f.run is not observer_overflow]
        self.problems: list[str] = []

    def run(self) -> None:
        try:
            self._faults()
        finally:
            self.done.set()
            self.release.wait()

    def _faults(self) -> None:
        rng = self.rng
        if not self.faults:
            return
        while not self.halt.wait(rng.uniform(0.2, 2 * self.mean_gap)):
            fault = rng.choices(self.faults, [f.weight for f in self.faults])[0]
            section = None
            if self.lane == DIRECTORY:
                section = rng.choice([x for x in self.soak.sections if fault.applies(x)])
            start = time.time()
            try:
                detail = fault.run(self.soak, rng, section)
            except Exception as e:
                detail = f"FAILED: {type(e).__name__}: {e}"
                self.problems.append(f"{fault.name}: {detail}")
            end = time.time()
            self.soak.ledger.window(start, end, section.index if section else None, fault.name)
            self.soak.timeline.record(start, end, fault.name, section.name if section else None, detail)
            if "FAILED" in detail and fault.lane == PROCESS and fault.run is observer_kill:
                return  # no observer to hit any more: the soak reports it
