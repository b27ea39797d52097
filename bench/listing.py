"""
The start: a million files present before the observer starts (C{listing}:
how long the start-up listing takes, and how a live section fares
meanwhile), and ten thousand directories watched (C{dirs}).
"""

from __future__ import annotations

import time
from array import array
from pathlib import Path
from typing import Any

from tests.kit import remove_tree

from .context import Context, finish, name_index, parse_names, percentile, wait_idle
from .harness import (
    Creator,
    LatencyConsumer,
)


def listing_prepare(ctx: Context, n: int) -> Path:
    """The directory of C{n} files the listing runs share (made once)."""
    directory = ctx.fresh("listing-files")
    made = Creator(ctx.resources, "burst", directory, n).result()
    ctx.say(f"prepared {made['count']} files at {made['rate']:,.0f}/s")
    return directory


def listing_run(ctx: Context, directory: Path, n: int, run: int, timeout: float) -> dict[str, Any]:
    work = ctx.fresh(f"listing-{run}")
    other = work / "other"
    other.mkdir()
    qa, qb = "q:listing", "q:other"
    times_path = work / "trickle.bin"
    config = [
        {"name": "listing", "directory": str(directory), "queue": qa},
        {"name": "other", "directory": str(other), "queue": qb},
    ]
    ctx.client.flushall()
    # The other directory's events are received by a process of their own,
    # so their receive times do not depend on this one draining the listing.
    consumer = LatencyConsumer(ctx.resources, ctx.redis.port, qb, work / "other.json")
    observer = ctx.observer(work, config)
    t0 = observer.started_at
    ready_s = observer.wait_ready()
    profiler = ctx.profiler(observer, "listing", run)
    trickle = Creator(ctx.resources, "trickle", other, 0.01, times_path)
    client = ctx.client

    listed: list[list[bytes]] = []
    drained_a = 0
    t_all: float | None = None
    made: dict[str, Any] | None = None
    deadline = time.time() + timeout

    def poll() -> int:
        # One transaction: LLEN before RPOP, so drained + LLEN is what Redis
        # had received at that moment.
        nonlocal drained_a, t_all
        pipe = client.pipeline(transaction=True)
        pipe.llen(qa)
        pipe.rpop(qa, 5000)
        length, batch = pipe.execute()
        now = time.time()
        if t_all is None and drained_a + length >= n:
            t_all = now
        if batch:
            listed.append(batch)
            drained_a += len(batch)
        return len(batch or ())

    while True:
        got = poll()
        now = time.time()
        if made is None and ((t_all is not None and now > t_all + 0.5) or now > deadline):
            # Some more files in the other directory after the listing, then stop.
            trickle.stop()
            made = trickle.result()
            ctx.say(f"all {n} files announced {t_all - t0:.2f} s after start" if t_all else "listing timed out")
        if made is not None and (drained_a >= n or now > deadline):
            break
        if not got:
            time.sleep(0.002)
    wait_idle(observer, poll, time.time() + 5.0)
    other_records = consumer.stop()
    # The listing started with the process: charge all of its CPU.
    events = drained_a + len(other_records)
    figures = finish(observer, profiler, 0.0, events)

    announced = set()
    exists = 0
    for batch in listed:
        names, e = parse_names(batch)
        announced.update(names)
        exists += e
    times = array("d")
    with open(times_path, "rb") as f:
        times.frombytes(f.read())
    first_seen: dict[int, float] = {}
    detected: dict[int, float] = {}
    for name, at, stamp in other_records:
        i = name_index(name.encode(), b"t", len(times))
        if i >= 0 and i not in first_seen:
            first_seen[i] = at
            detected[i] = stamp
    latencies = [(at - times[i]) * 1000.0 for i, at in first_seen.items()]
    during = [(at - times[i]) * 1000.0 for i, at in first_seen.items() if t_all is None or times[i] <= t_all]
    detect = [(stamp - times[i]) * 1000.0 for i, stamp in detected.items()]
    worst = max(first_seen, key=lambda i: first_seen[i] - times[i], default=None)
    figures.update(
        {
            "all_announced_s": (t_all - t0) if t_all else timeout,
            "ready_s": ready_s,
            "missing": float(n - len(announced)),
            "exists_events": float(exists),
            "other_files": float(len(times)),
            "other_missing": float(len(times) - len(first_seen)),
            "other_worst_ms": max(latencies, default=0.0),
            "other_worst_during_ms": max(during, default=0.0),
            "other_p50_ms": percentile(latencies, 50),
            "other_p99_ms": percentile(latencies, 99),
            "other_detect_worst_ms": max(detect, default=0.0),
            "other_detect_p50_ms": percentile(detect, 50),
            # When the worst-served file was created, in seconds after the
            # observer was started (tells which phase of the listing stalls).
            "other_worst_created_at_s": (times[worst] - t0) if worst is not None else 0.0,
            "events": float(events),
        }
    )
    remove_tree(work)
    return figures


# -- many directories -------------------------------------------------------


def dirs_run(ctx: Context, ndirs: int, run: int, timeout: float) -> dict[str, Any]:
    work = ctx.fresh(f"dirs-{run}")
    root = work / "tree"
    root.mkdir()
    sections = []
    for i in range(ndirs):
        d = root / f"d{i:05d}"
        d.mkdir()
        sections.append(
            {"name": f"d{i:05d}", "directory": str(d), "queue": f"q:dirs:{i:05d}", "counter": "c:dirs"}
        )
    observer = ctx.observer(work, sections)
    ready_s = observer.wait_ready(timeout=max(120.0, timeout))
    cpu0 = observer.cpu()
    profiler = ctx.profiler(observer, "dirs", run)
    client = ctx.client
    creator = Creator(ctx.resources, "tree", root, ndirs)
    t_done = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        counted = int(client.get("c:dirs") or 0)
        if counted >= ndirs:
            t_done = time.time()
            break
        time.sleep(0.002)
    made = creator.result()
    wait_idle(observer, lambda: 0, time.time() + 5.0)

    delivered = 0
    events = 0
    for start in range(0, ndirs, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(ndirs, start + 1000)):
            pipe.lrange(f"q:dirs:{i:05d}", 0, -1)
        for values in pipe.execute():
            events += len(values)
            names, _ = parse_names(values) if values else ([], 0)
            delivered += b"x" in names
    figures = finish(observer, profiler, cpu0, events)
    figures.update(
        {
            "ready_s": ready_s,
            "delivered": float(delivered),
            "missing": float(ndirs - delivered),
            "delivery_s": (t_done - made["t_first"]) if t_done else timeout,
            "creation_s": made["t_last"] - made["t_first"],
            "events": float(events),
        }
    )
    remove_tree(work)
    return figures
