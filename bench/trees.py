"""
The workloads of whole trees and of polling.  Like L{bench.burst}, each
``*_run`` function does one run with a fresh observer process and returns
its figures.

 - ``tree-listing``: a tree of files in sub-directories present at start
   (``recursive = true``): how long until every file is announced.
 - ``tree-burst``: sub-directories created (two levels) and filled at once,
   as fast as possible: no file of a new sub-directory may be missed.
 - ``poll-cost``: a directory of many files polled (``watch_mode = poll``,
   every 2 s): the observer's CPU while nothing changes but a trickle of
   new files, their detection delay, and the memory a scan keeps.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.kit import remove_tree

from .context import Context, finish, name_index, parse_names, parse_stamped, percentile, wait_idle
from .harness import Creator

#: seconds between two scans in poll-cost (the default of poll_interval)
POLL_INTERVAL = 2.0


class _Drain:
    """Moves events out of one list and counts the files of one name prefix."""

    def __init__(self, ctx: Context, queue: str, prefix: bytes, n: int) -> None:
        self.client, self.queue, self.prefix, self.n = ctx.client, queue, prefix, n
        self.seen = bytearray(n)
        self.covered = self.events = self.exists = self.foreign = 0
        self.sample: list[bytes] = []
        self.t_all: float | None = None

    def __call__(self) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(self.queue)
        pipe.rpop(self.queue, 10_000)
        length, batch = pipe.execute()
        now = time.time()
        if not batch:
            return 0
        if len(self.sample) < 200:
            self.sample += batch[: 200 - len(self.sample)]
        self.events += len(batch)
        names, exists = parse_names(batch)
        self.exists += exists
        seen, covered = self.seen, self.covered
        for name in names:
            i = name_index(name, self.prefix, self.n)
            if i < 0:
                self.foreign += 1
            elif not seen[i]:
                seen[i] = 1
                covered += 1
        self.covered = covered
        if self.t_all is None and covered == self.n:
            self.t_all = now
        return len(batch)

    def misplaced(self) -> int:
        """Sampled events whose directory does not hold their file."""
        wrong = 0
        for raw in self.sample:
            event = json.loads(raw)
            wrong += not os.path.exists(os.path.join(event["directory"], event["filename"]))
        return wrong


# -- tree-listing -------------------------------------------------------------------


def tree_prepare(ctx: Context, files: int, dirs: int) -> Path:
    """The tree the tree-listing runs share (made once)."""
    directory = ctx.fresh("tree-files")
    made = Creator(ctx.resources, "tree-fill", directory, dirs, files).result()
    ctx.say(f"prepared {made['count']:,} files in {dirs:,} sub-directories at {made['rate']:,.0f}/s")
    return directory


def tree_listing_run(ctx: Context, directory: Path, n: int, run: int, timeout: float) -> dict[str, Any]:
    work = ctx.fresh(f"tree-listing-{run}")
    queue = "q:tree"
    observer = ctx.observer(work, [{"name": "tree", "directory": str(directory), "queue": queue,
                                    "recursive": "true"}])
    t0 = observer.started_at
    ready_s = observer.wait_ready()
    profiler = ctx.profiler(observer, "tree-listing", run)
    drain = _Drain(ctx, queue, b"f", n)
    _poll_until(drain, lambda: drain.t_all is not None, time.time() + timeout)
    wait_idle(observer, drain, time.time() + 5.0)
    # The listing started with the process: charge all of its CPU.
    figures = finish(observer, profiler, 0.0, drain.events)
    figures.update({
        "all_announced_s": (drain.t_all - t0) if drain.t_all else timeout,
        "ready_s": ready_s,
        "missing": float(n - drain.covered),
        "misplaced": float(drain.misplaced()),
        "exists_events": float(drain.exists),
        "events": float(drain.events),
    })
    remove_tree(work)
    return figures


# -- tree-burst ----------------------------------------------------------------------


def tree_burst_run(ctx: Context, dirs: int, per_dir: int, run: int, straggler_timeout: float) -> dict[str, Any]:
    work = ctx.fresh(f"tree-burst-{run}")
    root = work / "tree"
    root.mkdir()
    queue = "q:tree-burst"
    n = dirs * per_dir
    observer = ctx.observer(work, [{"name": "tree", "directory": str(root), "queue": queue,
                                    "recursive": "true"}])
    ready_s = observer.wait_ready()
    cpu0 = observer.cpu()
    profiler = ctx.profiler(observer, "tree-burst", run)
    drain = _Drain(ctx, queue, b"g", n)
    creator = Creator(ctx.resources, "tree-burst", root, dirs, per_dir)
    _poll_until(drain, lambda: not creator.running(), float("inf"))
    made = creator.result()
    ctx.say(f"made {dirs:,} sub-directories with {made['count']:,} files at {made['rate']:,.0f} files/s")
    deadline = time.time() + straggler_timeout
    _poll_until(drain, lambda: drain.t_all is not None, deadline)
    wait_idle(observer, drain, min(deadline, time.time() + 5.0))
    figures = finish(observer, profiler, cpu0, drain.events)
    figures.update({
        "creation_rate": made["rate"],
        "missing": float(n - drain.covered),
        "duplicates": float(drain.events - drain.covered - drain.foreign),
        "misplaced": float(drain.misplaced()),
        "catch_up_s": (drain.t_all - made["t_last"]) if drain.t_all else straggler_timeout,
        "ready_s": ready_s,
        "events": float(drain.events),
    })
    remove_tree(work)
    return figures


# -- poll-cost -------------------------------------------------------------------------


def scan_memory_per_million(directory: Path) -> float:
    """
    MiB that the memory of one scan (the set of names, as L{dirobserver.sources.polling}
    keeps it) takes for a million names like those of C{directory}.
    """
    names = set(os.listdir(os.fsencode(directory)))
    if not names:
        return 0.0
    # Each name is an object of its own (pymalloc rounds to 16 bytes); the
    # set's table of 16-byte entries is a power of two at most 60% full.
    per_name = sum((sys.getsizeof(name) + 15) // 16 * 16 for name in names) / len(names)
    table = 1 << (int(1_000_000 / 0.6) - 1).bit_length()
    return (per_name * 1_000_000 + table * 16) / (1 << 20)


def poll_cost_run(ctx: Context, n: int, run: int, window: float, timeout: float) -> dict[str, Any]:
    work = ctx.fresh(f"poll-cost-{run}")
    directory = work / "polled"
    directory.mkdir()
    Creator(ctx.resources, "burst", directory, n).result()
    queue = "q:poll"
    observer = ctx.observer(work, [{"name": "polled", "directory": str(directory), "queue": queue,
                                    "watch_mode": "poll", "poll_interval": f"{POLL_INTERVAL:g}"}])
    ready_s = observer.wait_ready()
    listing = _Drain(ctx, queue, b"f", n)
    deadline = time.time() + timeout
    _poll_until(listing, lambda: listing.t_all is not None, deadline)
    wait_idle(observer, listing, min(deadline, time.time() + 10.0))
    ctx.say(f"{listing.covered:,} files listed at start; polling for {window:g} s")

    # The window: nothing but a trickle of new files, one every 0.5 s.
    profiler = ctx.profiler(observer, "poll-cost", run)
    times_path = work / "trickle.bin"
    cpu0, t0 = observer.cpu(), time.time()
    trickle = Creator(ctx.resources, "trickle", directory, 0.5, times_path)
    stamped: dict[bytes, float] = {}

    def take() -> int:
        batch = ctx.client.rpop(queue, 1000) or []
        names, stamps = parse_stamped(batch)
        for name, stamp in zip(names, stamps, strict=True):
            stamped.setdefault(name, stamp)
        return len(batch)

    _poll_until(take, lambda: False, t0 + window)
    trickle.stop()
    made = trickle.result()
    cpu = observer.cpu() - cpu0
    elapsed = time.time() - t0
    # The last files: one more scan (and a little) to be found.
    _poll_until(take, lambda: len(stamped) >= made["count"], time.time() + 2 * POLL_INTERVAL + 1.0)
    from array import array

    times = array("d")
    with open(times_path, "rb") as f:
        times.frombytes(f.read())
    delays = [stamped[b"t%06d" % i] - times[i] for i in range(len(times)) if b"t%06d" % i in stamped]
    figures = finish(observer, profiler, cpu0, max(1, len(stamped)))
    figures.update({
        "cpu_percent": cpu / elapsed * 100.0,
        "scan_ms": cpu / max(1.0, elapsed / POLL_INTERVAL) * 1000.0,
        "detect_p50_s": percentile(delays, 50),
        "detect_max_s": max(delays, default=0.0),
        "missing": float(len(times) - len(delays)),
        "listing_missing": float(n - listing.covered),
        "scan_memory_mb": scan_memory_per_million(directory),
        "ready_s": ready_s,
        "events": float(listing.events + len(stamped)),
    })
    remove_tree(work)
    return figures


def _poll_until(take: Callable[[], int], done: Callable[[], bool], until: float) -> None:
    """Call C{take} (it drains, and returns how many events it got) until C{done()} or C{until}."""
    while not done() and time.time() < until:
        if not take():
            time.sleep(0.002)
