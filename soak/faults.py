"""
The soak's faults, the observer they hit, and the fault timeline.

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
   every section;
 - the I{directory} lane hits one section's directory (deleted and
   recreated, renamed away and back, made unreadable; in a tree, a
   sub-directory deleted); its windows cover that section.

The lanes are independent, so a directory fault may overlap a process fault
(an overflow while a directory is unreadable, a restart while it is
renamed away).  A fault is one row of L{FAULTS}: its lane, its weight, and
the function that does it and returns a line of detail.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kit import LoggedObserver, Resources, drop_root_file_access, remove_tree
from tests.kit.processes import peak_rss_mb

from .kinds import CHANGES, INVALID, STREAM, ObserverConfig, Section
from .ledger import Ledger
from .traffic import stream_event
from .working import worker_kill

RELOADED = b"Configuration reloaded"
REFUSED = b"Reload refused"
OVERFLOWED = b"queue overflowed"
HELD_BOUND = b"events held (max_held_events"
TRACEBACK = b"Traceback (most recent call last)"


def _obey_permissions() -> None:
    """
    preexec: as root, drop the capabilities that bypass directory
    permissions, so an unreadable directory is unreadable to the observer.
    """
    if os.geteuid() == 0:
        drop_root_file_access()


class Daemon:
    """
    The observer under test, across its restarts (one log file for all).

    @ivar lock: held while the observer is deliberately down, so that the
        watch for an unexpected exit does not mistake a fault for a crash.
    """

    def __init__(self, resources: Resources, config: Path, workdir: Path, extra_args: list[str]) -> None:
        self.resources, self.config, self.workdir = resources, config, workdir
        self.extra_args = extra_args
        self.lock = threading.RLock()
        self.observer: LoggedObserver | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / "observer.log"

    @property
    def proc(self) -> Any:
        assert self.observer is not None
        return self.observer.proc

    def start(self, timeout: float = 60.0) -> float:
        """Start an observer and wait for its ready line; seconds it took."""
        # The watchdog's probe directory of an observer killed by a fault
        # stays behind: in the scratch directory, it goes with it.
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        self.observer = LoggedObserver(self.resources, self.config, self.workdir, self.extra_args,
                                 preexec=_obey_permissions, append=self.starts > 0, env={"TMPDIR": str(tmp)})
        self.starts += 1
        return self.observer.wait_ready(timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def exited(self) -> int | None:
        """The exit status if the observer ended when no fault asked it to."""
        if self.observer is None or not self.lock.acquire(blocking=False):
            return None
        try:
            return self.proc.poll()
        finally:
            self.lock.release()

    def mark(self) -> int:
        """The log's size now: look for lines written after it."""
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def wait_for(self, text: bytes, since: int, timeout: float = 10.0) -> bool:
        """Whether a line with C{text} appears after C{since} within C{timeout}."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log, "rb") as f:
                f.seek(since)
                if text in f.read():
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def count(self, text: bytes) -> int:
        """How many times C{text} is in the log (every start's)."""
        return self.observer.log_count(text) if self.observer is not None else 0

    def rss_mb(self) -> float:
        """The current resident set of the observer, in MiB (0 when not running)."""
        try:
            rss = peak_rss_mb(self.proc.pid, "VmRSS")
        except OSError:
            return 0.0
        return rss if rss == rss else 0.0  # none for a process that exited


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


# -- the process lane -------------------------------------------------------------------


def pause_and_read(s: Soak, pause_ms: int, unpause: bool = False) -> str:
    """
    Pause the master's writes for C{pause_ms} and tell the ledger which
    files its queues hold: announced, they are lost if Redis loses its data
    (see L{soak.ledger.Ledger.lost_with_redis}).  Consumers block
    meanwhile (their reads are writes), so nothing is taken either.

    For the sections that announce once, the records too: what the master
    holds (queues and records) and its replica does not yet, Redis may lose
    (L{soak.ledger.Ledger.once_lost}); with one server, all of it.

    @param unpause: let writes go on once the queues are read.
    """
    names: list[tuple[int, str]] = []
    once: set[tuple[int, str]] = set()
    client = s.redis.master_client()
    try:
        client.execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")
        when = time.time()
        for section in s.sections:
            found = _announced(client, section)
            names += found
            if section.kind.once:
                once.update(found)
                once.update(_recorded(client, section))
        for replica in s.redis.replica_clients() if once else ():
            try:
                for section in s.sections:
                    if section.kind.once:
                        once.difference_update(_announced(replica, section))
                        once.difference_update(_recorded(replica, section))
            finally:
                replica.close()
        if unpause:
            client.execute_command("CLIENT", "UNPAUSE")
    except Exception as e:  # the master went away meanwhile: nothing known
        return f"its queues could not be read ({e})"
    finally:
        client.close()
    said = f"{s.ledger.lost_with_redis(names, when)} files in its queues"
    if once:
        said += f", {s.ledger.once_lost(once, when)} announced once that its replica lacks"
    return said


def _announced(client: Any, section: Section) -> list[tuple[int, str]]:
    """The C{(section, name)} of the events in C{section}'s queue."""
    if section.kind.reader == STREAM:
        return [(section.index, stream_event(fields)[0]) for _id, fields in client.xrange(section.queue)]
    return [(section.index, json.loads(raw)["filename"]) for raw in client.lrange(section.queue, 0, -1)]


def _recorded(client: Any, section: Section) -> list[tuple[int, str]]:
    """The C{(section, path)} of the fields of C{section}'s record (C{announce_once}, its default key)."""
    return [(section.index, field.decode("utf-8", "surrogateescape"))
            for field in client.hkeys(section.record)]


def redis_kill(s: Soak, rng: random.Random, _: Section | None) -> str:
    where = s.redis.where()[1]
    held = pause_and_read(s, 10_000)
    s.redis.kill()
    down = rng.uniform(0.2, 2.0)
    time.sleep(down)
    s.redis.restart()
    return f"SIGKILL of the master on {where} ({held}), restarted empty after {down:.1f} s"


def failover(s: Soak, rng: random.Random, _: Section | None) -> str:
    # The demoted master's last writes may not reach the new one: read its
    # queues first (a short pause, then it writes on until it is demoted).
    held: list[str] = []
    detail = s.redis.failover(lambda: held.append(pause_and_read(s, 10_000, unpause=True)))
    return f"SENTINEL FAILOVER: {detail}" + (f" ({held[0]})" if held else "")


def redis_stop(s: Soak, rng: random.Random, _: Section | None) -> str:
    stopped = s.config.timeout + rng.uniform(0.5, 2.5)
    s.redis.pause()
    time.sleep(stopped)
    s.redis.resume()
    return f"SIGSTOP for {stopped:.1f} s (timeout {s.config.timeout:g})"


def observer_overflow(s: Soak, rng: random.Random, _: Section | None) -> str:
    section = rng.choice([x for x in s.sections if x.kind.kernel_queue and not x.kind.worker])
    count = min(s.queued_events + 2000, 100_000)
    before = s.daemon.count(OVERFLOWED)
    with s.daemon.lock:
        s.daemon.signal(signal.SIGSTOP)
        try:
            s.burst(section, count)
            time.sleep(rng.uniform(0.2, 1.0))
        finally:
            s.daemon.signal(signal.SIGCONT)
    seen = False
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        seen = s.daemon.count(OVERFLOWED) > before
        time.sleep(0.1)
    return f"SIGSTOP, {count} files into [{section.name}], SIGCONT; overflow {'logged' if seen else 'NOT logged'}"


def observer_kill(s: Soak, rng: random.Random, _: Section | None) -> str:
    down = rng.uniform(0.0, 1.5)
    with s.daemon.lock:
        s.daemon.kill()
        time.sleep(down)
        ready = s.daemon.start()
    return f"SIGKILL, restarted after {down:.1f} s, ready in {ready:.2f} s"


def _reload(s: Soak, expect: bytes) -> bool:
    mark = s.daemon.mark()
    s.daemon.signal(signal.SIGHUP)
    return s.daemon.wait_for(expect, mark)


def reload_changed(s: Soak, rng: random.Random, _: Section | None) -> str:
    variant = rng.choice(CHANGES)
    if variant != "section_off":
        what = s.config.change(variant)
        s.config.write()
        return f"SIGHUP, {what}: {'reloaded' if _reload(s, RELOADED) else 'NO reload line'}"
    section = rng.choice(s.sections).name
    off = s.config.change(variant, section)
    s.config.write()
    first = _reload(s, RELOADED)
    time.sleep(rng.uniform(0.5, 2.5))
    on = s.config.change(variant, section)
    s.config.write()
    second = _reload(s, RELOADED)
    return f"SIGHUP, {off}; SIGHUP, {on}: {'reloaded' if first and second else 'NO reload line'}"


def reload_invalid(s: Soak, rng: random.Random, _: Section | None) -> str:
    variant = rng.choice(INVALID)
    s.config.write(invalid=variant)
    try:
        refused = _reload(s, REFUSED)
    finally:
        s.config.write()
    return f"SIGHUP with {variant}: {'refused' if refused else 'NO refusal line'}"


def held_overflow(s: Soak, rng: random.Random, _: Section | None) -> str:
    count = int(s.config.max_held * 1.3)
    bursty = [x for x in s.sections if not x.kind.worker]
    targets = rng.sample(bursty, min(len(bursty), rng.randint(1, 3)))
    mark = s.daemon.mark()
    if not s.redis.sentinel:
        pause_and_read(s, 10_000)  # its outage is a kill: it comes back empty
    s.redis.outage()
    started = time.time()
    for section in targets:
        s.burst(section, count // len(targets))
    time.sleep(max(0.0, rng.uniform(2.0, 5.0) - (time.time() - started)))
    s.redis.outage_end()
    bound = s.daemon.wait_for(HELD_BOUND, mark, timeout=1.0)
    names = ", ".join(f"[{x.name}]" for x in targets)
    return (f"Redis down, {count} files into {names} (max_held_events {s.config.max_held}), "
            f"restarted after {time.time() - started:.1f} s; bound {'logged' if bound else 'NOT logged'}")


# -- the directory lane ---------------------------------------------------------------------


def dir_delete(s: Soak, rng: random.Random, section: Section | None) -> str:
    assert section is not None
    with section.ops:
        when = time.time()
        remove_tree(section.directory)
        swept = s.ledger.swept(section.index, when)
        gap = rng.uniform(0.0, 1.5)
        time.sleep(gap)
        section.directory.mkdir()
    return f"deleted with {swept} files, recreated after {gap:.1f} s"


def subtree_delete(s: Soak, rng: random.Random, section: Section | None) -> str:
    """A sub-directory of a tree, with its files, deleted (and not recreated)."""
    assert section is not None
    with section.ops:
        subdirs = sorted(p.name for p in section.directory.iterdir() if p.is_dir() and p.name.startswith("n"))
        if not subdirs:
            return "no sub-directory yet"
        victim = rng.choice(subdirs)
        when = time.time()
        remove_tree(section.directory / victim)
        swept = s.ledger.swept(section.index, when, victim)
    return f"sub-directory {victim} deleted with {swept} files"


def dir_rename(s: Soak, rng: random.Random, section: Section | None) -> str:
    assert section is not None
    away = section.directory.with_name(section.directory.name + ".away")
    with section.ops:
        os.rename(section.directory, away)
        gap = rng.uniform(0.2, 2.5)
        time.sleep(gap)
        os.rename(away, section.directory)
    return f"renamed away, back after {gap:.1f} s"


def dir_unreadable(s: Soak, rng: random.Random, section: Section | None) -> str:
    assert section is not None
    gap = rng.uniform(1.0, 4.0)
    # Writable and searchable, not readable: producers go on writing, the
    # observer can neither list nor watch it.
    section.directory.chmod(0o300)
    try:
        time.sleep(gap)
    finally:
        section.directory.chmod(0o755)
    return f"mode 300 for {gap:.1f} s"


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
