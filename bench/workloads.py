"""
The workloads.  Each ``*_run`` function does one run with a fresh observer
process and returns the run's figures as a dict of numbers (plus a few
details under keys starting with ``_``, kept in the JSON only).

All times are C{time.time()} in this process and in the creator (the same
clock), so "created at" and "received at" compare directly.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirobserver.config.settings import ANNOUNCED_SUFFIX
from tests.kit import RedisServer, Resources, remove_tree

from .harness import (
    OVERFLOW_MARK,
    Creator,
    LatencyConsumer,
    Observer,
    Profiler,
    Sampler,
    write_config,
)

_NAME = re.compile(rb'"filename":\s*"([^"\\]*)"')
_EXISTS = re.compile(rb'"event":\s*"exists"')
_STAMP = re.compile(rb'"event_timestamp":\s*([-+0-9.eE]+)')


@dataclass
class Context:
    resources: Resources
    redis: RedisServer
    root: Path
    profile_dir: Path | None = None
    verbose: bool = True
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.redis.client(socket_timeout=60)
        return self._client

    def fresh(self, name: str) -> Path:
        """A new, empty directory under the scratch root."""
        path = self.root / name
        remove_tree(path)
        path.mkdir(parents=True)
        return path

    def observer(self, workdir: Path, sections: list[dict[str, str]], extra_args: Sequence[str] = ()) -> Observer:
        """A fresh observer of C{sections} (C{extra_args}: more options of the subcommand), Redis emptied."""
        config = workdir / "observer.ini"
        write_config(config, self.redis.port, sections)
        self.client.flushall()
        return Observer(self.resources, config, workdir, extra_args=extra_args)

    def profiler(self, observer: Observer, name: str, run: int) -> Profiler | None:
        if self.profile_dir is None or run != 0:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return Profiler(self.resources, observer.pid, self.profile_dir / f"{name}.txt")

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"    {text}", flush=True)


def parse_names(batch: list[bytes]) -> tuple[list[bytes], int]:
    """File names of a batch of events, and how many are "exists" events."""
    joined = b"\n".join(batch)
    names = _NAME.findall(joined)
    if len(names) == len(batch):
        return names, len(_EXISTS.findall(joined))
    # The format is not the one expected: decode each event properly.
    names, exists = [], 0
    for raw in batch:
        event = json.loads(raw)
        names.append(os.fsencode(event["filename"]))
        exists += event.get("event") == "exists"
    return names, exists


def parse_stamped(batch: list[bytes]) -> tuple[list[bytes], list[float]]:
    """File names and event timestamps of a batch of events."""
    joined = b"\n".join(batch)
    names = _NAME.findall(joined)
    stamps = _STAMP.findall(joined)
    if len(names) == len(batch) == len(stamps):
        return names, [float(s) for s in stamps]
    events = [json.loads(raw) for raw in batch]
    return [os.fsencode(e["filename"]) for e in events], [float(e["event_timestamp"]) for e in events]


def _index(name: bytes, prefix: bytes, limit: int) -> int:
    """C{p00000012} -> 12; -1 for a name that is not one of ours."""
    if not name.startswith(prefix):
        return -1
    try:
        i = int(name[len(prefix):])
    except ValueError:
        return -1
    return i if 0 <= i < limit else -1


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def _finish(observer: Observer, profiler: Profiler | None, cpu0: float, events: int) -> dict[str, float]:
    """The observer's CPU and memory figures, then stop it (and the profiler)."""
    cpu = observer.cpu() - cpu0
    rss = observer.peak_rss_mb()
    if profiler is not None:
        profiler.stop()
    overflows = observer.log_count(OVERFLOW_MARK)
    errors = observer.errors()
    observer.stop()
    return {
        "cpu_s": cpu,
        "cpu_per_100k": cpu / events * 100_000 if events else 0.0,
        "peak_rss_mb": rss,
        "overflows": float(overflows),
        "log_errors": float(errors),
    }


def _wait_idle(observer: Observer, poll: Any, until: float, window: float = 0.5) -> None:
    """
    Keep calling C{poll()} (which drains and returns how many events it got)
    until the observer used almost no CPU and nothing arrived for C{window}
    seconds, or until C{until}.
    """
    mark_cpu, mark_time, got = observer.cpu(), time.time(), 0
    while time.time() < until:
        n = poll()
        got += n
        if not n:
            time.sleep(0.005)
        if time.time() - mark_time >= window:
            cpu = observer.cpu()
            if got == 0 and cpu - mark_cpu < 0.05 * window:
                return
            mark_cpu, mark_time, got = cpu, time.time(), 0


# -- 1. burst ----------------------------------------------------------------


def _section(name: str, directory: Path, queue: str, closed: bool, once: bool = False) -> dict[str, str]:
    section = {"name": name, "directory": str(directory), "queue": queue}
    if closed:
        section["announce"] = "closed"
    if once:
        section["announce_once"] = "true"
    return section


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
    observer = ctx.observer(work, [_section("burst", directory, queue, closed, once)])
    ready_s = observer.wait_ready()
    cpu0 = observer.cpu()
    profiler = ctx.profiler(observer, name, run)
    client = ctx.client
    redis_cpu0, consumer_cpu0 = redis_cpu(client), time.process_time()

    # During the run the consumer only moves events out of Redis (so the
    # list does not grow) and notes how many Redis had received when: one
    # transaction LLEN + RPOP, so drained-before + LLEN is the number of
    # events pushed so far.  Names are looked at afterwards, so the
    # consumer's CPU competes as little as possible with the observer.  The
    # list is FIFO (LPUSH, RPOP): the k-th event drained is the k-th pushed,
    # which gives the time each event was in Redis (to a poll's precision).
    batches: list[list[bytes]] = []
    timeline: list[tuple[float, int]] = []  # (time, events pushed by then)
    drained = 0

    def poll() -> int:
        nonlocal drained
        pipe = client.pipeline(transaction=True)
        pipe.llen(queue)
        pipe.rpop(queue, 10_000)
        length, batch = pipe.execute()
        now = time.time()
        if not timeline or timeline[-1][1] != drained + length:
            timeline.append((now, drained + length))
        if batch:
            batches.append(batch)
            drained += len(batch)
        return len(batch or ())

    seen = bytearray(n)
    coverage = {"covered": 0, "exists": 0, "foreign": 0, "position": None, "parsed": 0, "checked": 0}

    def check_coverage() -> bool:
        """Look at the batches not looked at yet; True once every file is seen."""
        covered = coverage["covered"]
        for batch in batches[coverage["checked"]:]:
            names, exists = parse_names(batch)
            coverage["exists"] += exists
            for j, name in enumerate(names):
                i = _index(name, b"f", n)
                if i < 0:
                    coverage["foreign"] += 1
                elif not seen[i]:
                    seen[i] = 1
                    covered += 1
                    if covered == n:
                        coverage["position"] = coverage["parsed"] + j + 1
            coverage["parsed"] += len(batch)
            coverage["checked"] += 1
        coverage["covered"] = covered
        return covered == n

    creator = Creator(ctx.resources, "burst", directory, n)
    while creator.running():
        if not poll():
            time.sleep(0.002)
    made = creator.result()
    ctx.say(f"created {made['count']} files at {made['rate']:,.0f}/s; {drained:,} events drained so far")
    deadline = time.time() + straggler_timeout
    # Until the observer is idle and the list empty (a listing after an
    # overflow may still be pushing), then count; stragglers: until deadline.
    budget: list[float] = []  # the consumer's and Redis's CPU until the observer was first idle
    while True:
        _wait_idle(observer, poll, deadline)
        if not budget:  # before the names are parsed: that work is the bench's, not the burst's
            budget = [time.process_time() - consumer_cpu0, redis_cpu(client) - redis_cpu0]
        if check_coverage() or time.time() > deadline:
            break
    figures = _finish(observer, profiler, cpu0, drained)
    figures.update(cpu_budget(figures["cpu_s"], made.get("cpu_s", 0.0), *budget, n,
                              made["t_last"] - made["t_first"]))

    position = coverage["position"]
    t_in_redis = next((t for t, pushed in timeline if position and pushed >= position), None)
    span = (t_in_redis - made["t_first"]) if t_in_redis else 0.0
    delivered_rate = n / span if span > 0 else 0.0
    figures.update(
        {
            "creation_rate": made["rate"],
            "delivered_rate": delivered_rate,
            "ratio": delivered_rate / made["rate"] if made["rate"] else 0.0,
            "missing": float(n - coverage["covered"]),
            "duplicates": float(drained - coverage["covered"] - coverage["foreign"]),
            "exists_events": float(coverage["exists"]),
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


# -- 2. paced ------------------------------------------------------------------


@dataclass(frozen=True)
class Paced:
    """
    A paced workload: C{rate} files a second; C{linger} the observer's
    (None: its default), so that rows with and without it show the curve of
    CPU per file against the rate; C{closed}: the section announces complete
    files only (latencies from each close); C{once}: the section has
    C{announce_once} (what a file's record entry costs, at a rate the
    observer keeps up with).
    """

    rate: int
    linger: str | None = None
    closed: bool = False
    once: bool = False


#: The paced workloads by name, in the order of the table.
PACED = {
    "paced-100": Paced(100),
    "paced-100-linger0": Paced(100, "0"),
    "paced-1k": Paced(1_000),
    "paced-1k-linger0": Paced(1_000, "0"),
    "paced-10k": Paced(10_000),
    "paced-10k-linger0": Paced(10_000, "0"),
    "paced-20k": Paced(20_000),
    "paced-20k-linger0": Paced(20_000, "0"),
    "paced-20k-once": Paced(20_000, once=True),
    "paced-closed": Paced(1_000, closed=True),
}


def paced_run(ctx: Context, name: str, seconds: float, run: int) -> dict[str, Any]:
    """
    Workload C{name} of L{PACED} for C{seconds}; latencies from each
    creation, or from each close.
    """
    paced = PACED[name]
    rate, closed = paced.rate, paced.closed
    work = ctx.fresh(f"{name}-{run}")
    directory = work / "paced"
    directory.mkdir()
    queue = "q:paced"
    times_path = work / "times.bin"
    section = _section("paced", directory, queue, closed, paced.once)
    if paced.linger is not None:
        section["linger"] = paced.linger
    observer = ctx.observer(work, [section])
    ready_s = observer.wait_ready()
    cpu0 = observer.cpu()
    profiler = ctx.profiler(observer, name, run)
    client = ctx.client

    received: list[tuple[list[bytes], float]] = []  # (events, received at)
    count = 0
    sampler = Sampler(ctx.redis.client(socket_timeout=60), queue)
    sampler.start()
    creator = Creator(ctx.resources, "paced-closed" if closed else "paced", directory, rate, seconds, times_path)
    made: dict[str, Any] | None = None
    deadline = None
    while True:
        item = client.brpop([queue], timeout=0.05)
        if item:
            received.append(([item[1]], time.time()))
            count += 1
            more = client.rpop(queue, 1000)
            if more:
                received.append((more, time.time()))
                count += len(more)
        if made is None and not creator.running():
            made = creator.result()
            deadline = time.time() + 10.0
        if made is not None:
            # Everything in (and one more empty look for late duplicates), or
            # the bound for stragglers passed.
            if (count >= made["count"] and not item) or time.time() > deadline:
                break
    samples = sampler.stop()
    figures = _finish(observer, profiler, cpu0, count)

    times = array("d")
    with open(times_path, "rb") as f:
        times.frombytes(f.read())
    first_seen: dict[int, tuple[float, float]] = {}
    for events, at in received:
        names, stamps = parse_stamped(events)
        for name, stamp in zip(names, stamps, strict=True):
            i = _index(name, b"p", len(times))
            if i >= 0 and i not in first_seen:
                first_seen[i] = (at, stamp)
    latencies = [(at - times[i]) * 1000.0 for i, (at, _) in first_seen.items()]
    detect = [(stamp - times[i]) * 1000.0 for i, (_, stamp) in first_seen.items()]

    # Backlog: did the delay grow over the run?  Compare the median latency of
    # the files of the last second with that of the second second (the first
    # one includes warming up), and look at the list length sampled.
    def median_between(lo: float, hi: float) -> float:
        vals = [(first_seen[i][0] - times[i]) * 1000.0 for i in first_seen if lo <= times[i] < hi]
        return statistics.median(vals) if vals else 0.0

    t0 = times[0] if len(times) else 0.0
    t_end = times[-1] if len(times) else 0.0
    early = median_between(t0 + 1.0, t0 + 2.0) if seconds >= 3 else median_between(t0, t0 + seconds / 2)
    late = median_between(t_end - 1.0, t_end + 1.0) if seconds >= 3 else median_between(t0 + seconds / 2, t_end + 1)
    llen_max = max((n for _, n in samples), default=0)

    def llen_median(lo: float, hi: float) -> float:
        vals = [n for at, n in samples if lo <= at < hi]
        return statistics.median(vals) if vals else 0.0

    # Growth is a trend, not a spike (a spike shows in the max latency): the
    # delay of the last second is well above that of the early part, or the
    # list holds 20 ms of events more at the end than early on.
    early_llen = llen_median(t0 + 1.0, t0 + 2.0) if seconds >= 3 else llen_median(t0, t0 + seconds / 2)
    late_llen = llen_median(t_end - 1.0, t_end) if seconds >= 3 else llen_median(t0 + seconds / 2, t_end)
    grew = (late > 3 * early + 5.0) or (late_llen > early_llen + max(20, rate * 0.02))
    figures.update(
        {
            # CPU per file times the rate achieved: the share of a core.
            "cpu_percent": figures["cpu_per_100k"] / 1e5 * made["rate"] * 100.0,
            "rate": made["rate"],
            "files": float(made["count"]),
            "missing": float(made["count"] - len(first_seen)),
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies, default=0.0),
            "detect_p50_ms": percentile(detect, 50),
            "detect_p99_ms": percentile(detect, 99),
            "early_p50_ms": early,
            "late_p50_ms": late,
            "llen_max": float(llen_max),
            "early_llen_median": float(early_llen),
            "late_llen_median": float(late_llen),
            "backlog_grew": 1.0 if grew else 0.0,
            "schedule_lag_ms": made["max_schedule_lag_ms"],
            "ready_s": ready_s,
            "events": float(count),
        }
    )
    remove_tree(work)
    return figures


# -- 3. listing ----------------------------------------------------------------


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
    _wait_idle(observer, poll, time.time() + 5.0)
    other_records = consumer.stop()
    # The listing started with the process: charge all of its CPU.
    events = drained_a + len(other_records)
    figures = _finish(observer, profiler, 0.0, events)

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
        i = _index(name.encode(), b"t", len(times))
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


# -- 4. many directories -------------------------------------------------------


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
    _wait_idle(observer, lambda: 0, time.time() + 5.0)

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
    figures = _finish(observer, profiler, cpu0, events)
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


# -- 5. nothing happening ------------------------------------------------------

#: Sections of the idle workload: about what an operator's configuration has.
IDLE_SECTIONS = 10


def idle_run(ctx: Context, seconds: float, run: int) -> dict[str, Any]:
    """
    The observer's CPU over C{seconds} when nothing happens, once its start
    is over: ten sections with a forced poll every 300 s (as in the sample
    configuration) and the watchdog's default 300 s, Redis connected.
    """
    work = ctx.fresh(f"idle-{run}")
    sections = []
    for i in range(IDLE_SECTIONS):
        d = work / f"in{i}"
        d.mkdir()
        sections.append({"name": f"s{i}", "directory": str(d), "queue": f"q:idle:{i}",
                         "counter": "c:idle", "forced_poll": "300"})
    observer = ctx.observer(work, sections)
    observer.wait_ready()
    time.sleep(2.0)  # the start-up listings
    profiler = ctx.profiler(observer, "idle", run)
    cpu0, started = observer.cpu(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    figures = _finish(observer, profiler, cpu0, 0)
    # utime + stime count in clock ticks (10 ms): over 30 s, one tick is 0.033%.
    figures["cpu_percent"] = figures["cpu_s"] / elapsed * 100.0
    remove_tree(work)
    return figures
