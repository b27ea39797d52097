"""
The bursts: a million files created as fast as possible (C{burst}; with
C{announce = closed}, C{burst-closed}; with C{announce_once}, C{burst-once},
whose record's size is measured), how fast they are all in Redis, whether
any is missing, and where the CPU went.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from dirobserver.config.settings import ANNOUNCED_SUFFIX
from tests.kit import remove_tree

from .context import Context, finish, flat_section, name_index, parse_names, wait_idle
from .harness import (
    Creator,
)


def record_figures(client: Any, key: str, files: int) -> dict[str, float]:
    """
    The size of an C{announce_once} record once a run is over: its fields
    (C{HLEN}) and its Redis memory per file (C{MEMORY USAGE key SAMPLES 0}:
    every field counted, not a sample).
    """
    fields = int(client.hlen(key))
    memory = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
    return {
        "record_fields": float(fields),
        "record_bytes_per_file": memory / files if files else 0.0,
        "record_mb": memory / 2**20,
    }


#: Seconds between two counts of the queue's length during a burst.
COUNT_EVERY = 0.005


@dataclass
class Coverage:
    """How much of a burst the events drained so far name (see L{burst_run})."""

    covered: int = 0  # files seen at least once
    exists: int = 0  # "exists" events (a listing's)
    foreign: int = 0  # events naming no file of the burst
    position: int | None = None  # the drained event that completed the coverage
    parsed: int = 0  # events looked at
    checked: int = 0  # batches looked at


def redis_cpu(client: Any) -> float:
    """The CPU seconds the bench's Redis has used (C{INFO cpu}: user and system, its main thread's and others')."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_budget(observer: float, creator: float, redis: float, consumer: float, files: int,
               creation_s: float) -> dict[str, float]:
    """
    Where a burst's CPU went, per 100k files, and what that allows: the
    creator, the observer, Redis and this process's consumer share
    C{os.cpu_count()} cores, so the burst cannot be all in Redis before
    C{total / cores} seconds after its first file: the delivered rate is at
    most C{creation_s / (total / cores)} of the creation rate, even with
    every core busy all the time (which they are not).  On a quiet machine
    only: another process's CPU is not counted.
    """
    per = 100_000 / files if files else 0.0
    total = observer + creator + redis + consumer
    cores = os.cpu_count() or 1
    bound = min(1.0, creation_s / (total / cores)) if total > 0 else 0.0
    return {"creator_cpu_per_100k": creator * per, "redis_cpu_per_100k": redis * per,
            "consumer_cpu_per_100k": consumer * per, "cpu_bound_ratio": bound}


def burst_run(ctx: Context, n: int, run: int, straggler_timeout: float, closed: bool = False,
              once: bool = False) -> dict[str, Any]:
    """
    C{n} files created (and closed) as fast as possible.  C{closed}: the
    section announces complete files only, each at its close.  C{once}: the
    section has C{announce_once}, so every event also writes its record
    entry, whose size is measured at the end.
    """
    name = "burst-closed" if closed else "burst-once" if once else "burst"
    work = ctx.fresh(f"{name}-{run}")
    directory = work / "burst"
    directory.mkdir()
    queue = "q:burst"
    observer = ctx.observer(work, [flat_section("burst", directory, queue, closed, once)])
    ready_s = observer.wait_ready()
    cpu0 = observer.cpu()
    profiler = ctx.profiler(observer, name, run)
    client = ctx.client
    redis_cpu0, consumer_cpu0 = redis_cpu(client), time.process_time()

    # Until the observer is idle after the burst the consumer only counts
    # (LLEN every COUNT_EVERY seconds: how many events Redis had received
    # when); then it takes them all out (one transaction LLEN + RPOP, so
    # drained-before + LLEN is the number pushed so far) and looks at the
    # names.  Taking them out during the burst cost the bench's process and
    # Redis a few microseconds a file of the two cores the creator, the
    # observer and Redis share (a consumer of a real pipeline is elsewhere,
    # or at least not the observer's work).  The list is FIFO (LPUSH,
    # RPOP): the k-th event drained is the k-th pushed, which gives the time
    # each event was in Redis (to a poll's precision).
    batches: list[list[bytes]] = []
    timeline: list[tuple[float, int]] = []  # (time, events pushed by then)
    drained = 0
    counted = 0  # events pushed as of the last count

    def noted(length: int) -> None:
        if not timeline or timeline[-1][1] != drained + length:
            timeline.append((time.time(), drained + length))

    def count() -> int:
        """How many events came since the last count (a pause first, so that counting costs little)."""
        nonlocal counted
        time.sleep(COUNT_EVERY)
        length = client.llen(queue)
        noted(length)
        grown, counted = drained + length - counted, drained + length
        return grown

    def poll() -> int:
        nonlocal drained
        pipe = client.pipeline(transaction=True)
        pipe.llen(queue)
        pipe.rpop(queue, 10_000)
        length, batch = pipe.execute()
        noted(length)
        if batch:
            batches.append(batch)
            drained += len(batch)
        return len(batch or ())

    seen = bytearray(n)
    coverage = Coverage()

    def check_coverage() -> bool:
        """Look at the batches not looked at yet; True once every file is seen."""
        covered = coverage.covered
        for batch in batches[coverage.checked:]:
            names, exists = parse_names(batch)
            coverage.exists += exists
            for j, name in enumerate(names):
                i = name_index(name, b"f", n)
                if i < 0:
                    coverage.foreign += 1
                elif not seen[i]:
                    seen[i] = 1
                    covered += 1
                    if covered == n:
                        coverage.position = coverage.parsed + j + 1
            coverage.parsed += len(batch)
            coverage.checked += 1
        coverage.covered = covered
        return covered == n

    creator = Creator(ctx.resources, "burst", directory, n)
    while creator.running():
        count()
    made = creator.result()
    ctx.say(f"created {made['count']} files at {made['rate']:,.0f}/s; {counted:,} events in Redis so far")
    deadline = time.time() + straggler_timeout
    # Until the observer is idle (a listing after an overflow may still be
    # pushing), counting; then take everything out and look at the names;
    # stragglers: until deadline.
    wait_idle(observer, count, deadline)
    # The burst's CPU: the consumer's (counting) and Redis's until then.
    consumer_cpu, redis_burst_cpu = time.process_time() - consumer_cpu0, redis_cpu(client) - redis_cpu0
    while True:
        while poll():
            pass
        if check_coverage() or time.time() > deadline:
            break
        wait_idle(observer, poll, deadline)
    figures = finish(observer, profiler, cpu0, drained)
    figures.update(cpu_budget(figures["cpu_s"], made.get("cpu_s", 0.0), redis_burst_cpu, consumer_cpu, n,
                              made["t_last"] - made["t_first"]))

    position = coverage.position
    t_in_redis = next((t for t, pushed in timeline if position and pushed >= position), None)
    span = (t_in_redis - made["t_first"]) if t_in_redis else 0.0
    delivered_rate = n / span if span > 0 else 0.0
    figures.update(
        {
            "creation_rate": made["rate"],
            "delivered_rate": delivered_rate,
            "ratio": delivered_rate / made["rate"] if made["rate"] else 0.0,
            "missing": float(n - coverage.covered),
            "duplicates": float(drained - coverage.covered - coverage.foreign),
            "exists_events": float(coverage.exists),
            "catch_up_s": (t_in_redis - made["t_last"]) if t_in_redis else straggler_timeout,
            "ready_s": ready_s,
            "events": float(drained),
        }
    )
    if once:
        # The section's record, under its default name.
        figures.update(record_figures(client, queue + ANNOUNCED_SUFFIX, n))
    remove_tree(work)
    return figures
