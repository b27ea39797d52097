"""
The ``fanotify-tree`` workload (issue 23): one big tree of directories
watched by C{watch_mode = fanotify} and by C{watch_mode = inotify}, side
by side, in the same run.

The tree (C{--fan-top} x C{--fan-sub} directories, 1,000 x 1,000 by
default, on tmpfs) is made once.  Each run starts one observer per mode on
it (a recursive section) and measures:

 - the time from the observer's start until every directory is watched:
   the start-up listing of a tree enters (watches) every directory before
   it reads it, and counts itself in C{dirobserver_listings_total} when it
   is over, which is read from C{/metrics} (and the observer's own time of
   that listing, C{dirobserver_listing_seconds_sum});
 - the observer's CPU and peak RSS (C{VmHWM}) by then;
 - the kernel memory of the marks: the slab caches of fsnotify marks,
   connectors and inotify's IDR, and C{SUnreclaim}, before the start and
   once all is watched (L{bench.kernel});
 - then a burst: C{--fan-files} files created as fast as one process can,
   spread over C{--fan-targets} directories of the tree drawn at random
   (seeded: the same ones for both modes), file I in directory I modulo
   their number: every file announced (counted by name), the delivered
   rate against the creation rate, the observer's CPU per 100k events.

The inotify run raises C{fs.inotify.max_user_watches} to what the tree
needs and restores it after.  Both need root (fanotify's filesystem mark,
the limit): elsewhere the workload is skipped.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from tests.kit import free_port, scrape_metrics

from .context import Context, finish, wait_idle
from .harness import Creator, Observer
from .kernel import KernelMemory, inotify_watches
from .trees import _Drain, _poll_until

MODES = ("fanotify", "inotify")
SECTION = "tree"
#: the seed of the directories the burst goes to
SEED = 23
#: watches the inotify run may need beyond the tree's (other watchers of the user)
WATCH_MARGIN = 100_000

#: What is measured in each mode: key, label, unit, kind (see L{bench.report}), and whether
#: the table gives fanotify / inotify (not for counts that should be 0).
MEASURES = (
    ("watching_s", "start -> every directory watched", "s", "s", True),
    ("listing_s", "start-up listing (the observer's own time)", "s", "s", True),
    ("ready_s", "start -> ready line", "s", "s", True),
    ("watch_cpu_s", "observer CPU until watched", "s", "s", True),
    ("watch_rss_mb", "observer peak RSS once watched", "MiB", "mb", True),
    ("marks_mb", "kernel: slab of marks, connectors, IDR", "MiB", "mb", True),
    ("sunreclaim_mb", "kernel: SUnreclaim delta", "MiB", "mb", True),
    ("creation_rate", "burst: creation rate", "files/s", "rate", True),
    ("delivered_rate", "burst: delivered rate (first create -> all in)", "files/s", "rate", True),
    ("delivered_ratio", "burst: delivered / creation", "", "ratio", True),
    ("missing", "burst: files never announced (worst run)", "files", "int", False),
    ("duplicates", "burst: duplicate events", "events", "int", False),
    ("misplaced", "burst: sampled events with a wrong directory", "events", "int", False),
    ("overflows", "burst: kernel queue overflows", "", "int", False),
    ("catch_up_s", "burst: last create -> all announced", "s", "s", True),
    ("cpu_per_100k", "burst: observer CPU per 100k events", "s", "s", True),
    ("peak_rss_mb", "observer peak RSS at the end", "MiB", "mb", True),
)


class Skipped(Exception):
    """The workload cannot run here (the reason is the message)."""


def unavailable(root: Path) -> str | None:
    """Why the workload cannot run with its tree under C{root} (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (a fanotify filesystem mark, and raising fs.inotify.max_user_watches)"
    from dirobserver.sources.fanotify_choice import problem

    return problem(str(root))


# -- the tree --------------------------------------------------------------------------


class Tree:
    """The tree both modes watch: C{top} directories of C{sub} sub-directories each."""

    def __init__(self, path: Path, top: int, sub: int, seconds: float) -> None:
        self.path, self.top, self.sub, self.seconds = path, top, sub, seconds

    @property
    def directories(self) -> int:
        """Every directory below the section's own."""
        return self.top * (1 + self.sub)

    def leaves(self, count: int, seed: int = SEED) -> list[bytes]:
        """C{count} distinct leaf directories drawn at random (seeded), as paths relative to the top."""
        count = min(count, self.top * self.sub)
        drawn = random.Random(seed).sample(range(self.top * self.sub), count)
        return [b"d%04d/e%04d" % divmod(i, self.sub) for i in drawn]

    def clear(self, directories: list[bytes]) -> None:
        """Remove the files of C{directories} (a burst's), so that the next mode finds the tree as it was."""
        root = os.fsencode(self.path)
        for relative in directories:
            directory = os.path.join(root, relative)
            for entry in os.scandir(directory):
                os.unlink(entry.path)


def tree_prepare(ctx: Context, top: int, sub: int, files: int) -> Tree:
    """
    Make the tree (once for every run): one C{mkdir} per directory, relative
    to its parent's descriptor.  C{files}: the burst's, which need inodes too.
    """
    path = ctx.fresh("fanotify-tree")
    why = unavailable(path)
    if why is not None:
        raise Skipped(why)
    # tmpfs has a fixed number of inodes, which other work on the machine
    # uses too: say so now rather than fail in the middle of a burst.
    needed, free = top * (1 + sub) + files, os.statvfs(path).f_favail
    if free < needed * 1.1:
        raise RuntimeError(f"{path}: {free:,} free inodes, and the tree and its burst need {needed:,}")
    t0 = time.monotonic()
    root = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(top):
            name = b"d%04d" % i
            os.mkdir(name, dir_fd=root)
            parent = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
            try:
                for j in range(sub):
                    os.mkdir(b"e%04d" % j, dir_fd=parent)
            finally:
                os.close(parent)
    finally:
        os.close(root)
    tree = Tree(path, top, sub, time.monotonic() - t0)
    ctx.say(f"made {tree.directories:,} directories ({top:,} x {sub:,}) in {tree.seconds:.1f} s "
            f"({tree.directories / max(tree.seconds, 1e-9):,.0f}/s)")
    return tree


# -- one run: both modes ---------------------------------------------------------------


def tree_run(ctx: Context, tree: Tree, targets: int, files: int, run: int, timeout: float,
             straggler_timeout: float) -> dict[str, Any]:
    """Both modes on C{tree}, one after the other; their figures prefixed by the mode, and the ratios."""
    work = ctx.fresh(f"fanotify-tree-{run}")
    targets_path = work / "targets"
    leaves = tree.leaves(targets)
    targets_path.write_bytes(b"\n".join(leaves) + b"\n")
    figures: dict[str, Any] = {"tree_s": tree.seconds, "directories": float(tree.directories)}
    for mode in MODES:
        if mode == "inotify":
            with inotify_watches(tree.directories + WATCH_MARGIN) as limit:
                ctx.say(f"fs.inotify.max_user_watches = {limit:,} for the inotify run")
                one = _mode_run(ctx, tree, mode, work, targets_path, files, run, timeout, straggler_timeout)
        else:
            one = _mode_run(ctx, tree, mode, work, targets_path, files, run, timeout, straggler_timeout)
        tree.clear(leaves)
        figures.update({f"{mode}_{key}": value for key, value in one.items()})
    for key, *_, compared in MEASURES:
        base = figures.get(f"inotify_{key}", 0.0)
        if compared and base:
            figures[f"ratio_{key}"] = figures.get(f"fanotify_{key}", 0.0) / base
    return figures


def _mode_run(ctx: Context, tree: Tree, mode: str, work: Path, targets_path: Path, files: int, run: int,
              timeout: float, straggler_timeout: float) -> dict[str, Any]:
    """One observer watching the tree in C{mode}: its start, then the burst."""
    queue = f"q:{mode}"
    port = free_port()
    before = KernelMemory()
    observer = ctx.observer(
        work, [{"name": SECTION, "directory": str(tree.path), "queue": queue, "recursive": "true",
                "watch_mode": mode}],
        extra_args=[f"--metrics=tcp:{port}:interface=127.0.0.1"])
    # Profiled (--profile) in two parts: the start, and the burst.
    profiler = ctx.profiler(observer, f"fanotify-tree-{mode}-start", run)
    ready_s = observer.wait_ready(timeout=timeout)
    samples = _wait_watched(observer, port, time.time() + timeout)
    watching_s = time.time() - observer.started_at
    if profiler is not None:
        profiler.stop()
    kernel = KernelMemory().since(before)
    start = {
        "watching_s": watching_s,
        "ready_s": ready_s,
        "listing_s": samples.get(("dirobserver_listing_seconds_sum", ()), 0.0),
        "watched": samples.get(("dirobserver_subdirectories", (("state", "watched"),)), 0.0),
        "watch_cpu_s": observer.cpu(),
        "watch_rss_mb": observer.peak_rss_mb(),
        **kernel,
    }
    ctx.say(f"{mode}: {start['watched']:,.0f} sub-directories watched {watching_s:.1f} s after the start "
            f"(ready line at {ready_s:.1f} s); peak RSS {start['watch_rss_mb']:,.0f} MiB; "
            f"kernel +{kernel['marks_mb']:.1f} MiB of mark slabs, SUnreclaim +{kernel['sunreclaim_mb']:.1f} MiB")
    profiler = ctx.profiler(observer, f"fanotify-tree-{mode}-burst", run)
    burst = _burst(ctx, observer, tree, queue, port, targets_path, files, straggler_timeout)
    figures = finish(observer, profiler, burst.pop("cpu0"), int(burst["events"]))
    figures.pop("overflows")  # inotify's log line only: the metric counts both kinds
    figures.update(start)
    figures.update(burst)
    return figures


def _wait_watched(observer: Observer, port: int, until: float) -> dict[Any, float]:
    """The metrics once the section's start-up listing (which watches every directory) is over."""
    done = ("dirobserver_listings_total", (("section", SECTION),))
    while time.time() < until:
        samples = scrape_metrics(port, timeout=30.0)
        if samples is not None and samples.get(done, 0.0) >= 1:
            return samples
        if observer.proc.poll() is not None:
            raise RuntimeError(f"the observer exited with {observer.proc.returncode}:\n{observer.tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"the tree was not watched in time:\n{observer.tail()}")


def _burst(ctx: Context, observer: Observer, tree: Tree, queue: str, port: int, targets_path: Path, n: int,
           straggler_timeout: float) -> dict[str, Any]:
    """C{n} files spread over the target directories: what reached Redis, and how fast."""
    cpu0 = observer.cpu()
    drain = _Drain(ctx, queue, b"s", n)
    creator = Creator(ctx.resources, "spread", tree.path, targets_path, n)
    _poll_until(drain, lambda: not creator.running(), float("inf"))
    made = creator.result()
    deadline = time.time() + straggler_timeout
    _poll_until(drain, lambda: drain.t_all is not None, deadline)
    wait_idle(observer, drain, min(deadline, time.time() + 5.0))
    samples = scrape_metrics(port, timeout=30.0)
    if samples is None:
        raise RuntimeError(f"the observer's /metrics did not answer after the burst:\n{observer.tail()}")
    span = (drain.t_all - made["t_first"]) if drain.t_all else 0.0
    ctx.say(f"burst: {made['count']:,} files at {made['rate']:,.0f}/s; {drain.covered:,} announced"
            + (f", all {span:.1f} s after the first" if drain.t_all else ""))
    return {
        "cpu0": cpu0,
        "creation_rate": made["rate"],
        "delivered_rate": n / span if span > 0 else 0.0,
        "delivered_ratio": n / span / made["rate"] if span > 0 and made["rate"] else 0.0,
        "missing": float(n - drain.covered),
        "duplicates": float(drain.events - drain.covered - drain.foreign),
        "misplaced": float(drain.misplaced()),
        "overflows": samples.get(("dirobserver_overflows_total", ()), 0.0),
        "catch_up_s": (drain.t_all - made["t_last"]) if drain.t_all else straggler_timeout,
        "events": float(drain.events),
    }


# -- the report -----------------------------------------------------------------------------


def side_by_side(result: dict[str, Any]) -> str:
    """The two modes in columns, and fanotify / inotify, from a workload's summarized figures."""
    figures = result.get("figures", {})
    rows = [("figure", "fanotify", "inotify", "fanotify / inotify")]
    for key, label, unit, kind, _compared in MEASURES:
        fan, ino, ratio = (figures.get(f"{side}_{key}") for side in ("fanotify", "inotify", "ratio"))
        if fan is None or ino is None:
            continue
        fmt = "{:,.0f}" if kind in ("rate", "int") else "{:.1%}" if kind == "ratio" else "{:,.2f}"
        suffix = f" {unit}" if unit else ""
        rows.append((label, fmt.format(fan["value"]) + suffix, fmt.format(ino["value"]) + suffix,
                     f"{ratio['value']:.3g}" if ratio is not None else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
