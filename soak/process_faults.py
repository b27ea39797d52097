"""
The faults of the I{process} lane (L{soak.faults}), which hit the daemon as
a whole: Redis SIGKILLed and restarted empty (L{redis_kill}), SIGSTOPped
past C{timeout} (L{redis_stop}), down past C{max_held_events} while
bursts come in (L{held_overflow}), with a Sentinel set failed over
(L{failover}; the kill is the master's, see L{soak.servers}); the observer
SIGSTOPped while a burst overflows the kernel queue (L{observer_overflow};
the queue's length: L{queued_events}), SIGKILLed and restarted
(L{observer_kill}), reloaded with a changed (L{reload_changed}) or an
invalid (L{reload_invalid}) configuration.  (The worker's C{worker_kill}
is L{soak.working.worker_kill}.)  Their windows cover every section.

Before a fault that may lose Redis's data, L{pause_and_read} tells the
ledger what Redis holds.  Each fault takes the L{soak.faults.Soak}, the
lane's random generator and no section, and returns a line of detail.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .consumer import stream_event
from .daemon import HELD_BOUND, OVERFLOWED, REFUSED, RELOADED
from .kinds import CHANGES, INVALID, STREAM, Section

if TYPE_CHECKING:
    from .faults import Soak


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


def queued_events() -> int:
    """The kernel's inotify queue length (a burst past it overflows)."""
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except (OSError, ValueError):
        return 16384


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
