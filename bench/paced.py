"""
The paced workloads: files at a steady rate (L{PACED}), the latency of each
from its creation (or close) to a consumer's C{BRPOP}, the observer's CPU
and the queue's backlog.
"""

from __future__ import annotations

import statistics
import time
from array import array
from dataclasses import dataclass
from typing import Any

from tests.kit import remove_tree

from .context import Context, finish, flat_section, name_index, parse_stamped, percentile
from .harness import (
    Creator,
    Sampler,
)


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
    section = flat_section("paced", directory, queue, closed, paced.once)
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
    deadline = float("inf")  # set when the creator is done
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
    figures = finish(observer, profiler, cpu0, count)

    times = array("d")
    with open(times_path, "rb") as f:
        times.frombytes(f.read())
    first_seen: dict[int, tuple[float, float]] = {}
    for events, at in received:
        names, stamps = parse_stamped(events)
        for filename, stamp in zip(names, stamps, strict=True):
            i = name_index(filename, b"p", len(times))
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
