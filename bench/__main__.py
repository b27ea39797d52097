"""
``python -m bench [--quick] [--runs N] [--burst N] [--listing N] [--dirs N]
[--paced-seconds S] [--tree-files N] [--tree-dirs N] [--burst-dirs N] [--poll-files N]
[--poll-window S] [--idle-seconds S] [--worker-files N] [--fan-top N] [--fan-sub N]
[--fan-targets N] [--fan-files N] [--only NAME,...] [--json PATH]
[--profile DIR] [--source DIR]``

Runs the workloads (burst, burst-closed, burst-once, the paced ones: 100, 1k, 10k and 20k
files a second with the default linger and with linger = 0, 20k with announce_once, paced-closed;
listing, dirs, tree-listing, tree-burst, poll-cost, idle, worker-1 and worker-4:
files through the observer and a worker, and fanotify-tree: a big tree
watched by fanotify and by inotify, side by side), prints the machine and a
table, and writes the same figures as JSON (by default
``bench/results/latest.json``).  Exit status: 0 when every workload ran
(whether or not its targets were met), 1 when one failed, 130 on Ctrl-C.

``--profile DIR`` records the observer of each workload's first run with
py-spy (``DIR/<workload>.txt``; summarize with ``python -m bench.profile``).
For experiments, the environment variable C{DIROBSERVER_BENCH_TWISTD}
replaces the twistd command (e.g. ``python /tmp/patched_twistd.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from tests.kit import REPO_ROOT, Resources, scratch_root

from . import report
from .burst import burst_run
from .context import Context
from .fanotify_tree import Skipped, side_by_side, tree_prepare as fan_tree_prepare, tree_run as fan_tree_run
from .harness import machine, redis_server
from .idle import idle_run
from .listing import dirs_run, listing_prepare, listing_run
from .paced import PACED, paced_run
from .trees import poll_cost_run, tree_burst_run, tree_listing_run, tree_prepare
from .workers import WORKERS, worker_run

WORKLOADS = ("burst", "burst-closed", "burst-once", *PACED, "listing", "dirs",
             "tree-listing", "tree-burst", "poll-cost", "idle", *WORKERS, "fanotify-tree")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 run: a smoke test")
    p.add_argument("--runs", type=int, help="runs per workload (default 3; 1 with --quick)")
    p.add_argument("--burst", type=int, help="files of the burst (default 1,000,000)")
    p.add_argument("--listing", type=int, help="files present before start (default 1,000,000)")
    p.add_argument("--dirs", type=int, help="monitored directories (default 10,000)")
    p.add_argument("--paced-seconds", type=float, help="duration of each paced run (default 10)")
    p.add_argument("--tree-files", type=int, help="files of the tree present at start (default 1,000,000)")
    p.add_argument("--tree-dirs", type=int, help="its sub-directories (default 10,000)")
    p.add_argument("--burst-dirs", type=int, help="sub-directories made and filled at once (default 1,000)")
    p.add_argument("--poll-files", type=int, help="files of the polled directory (default 100,000)")
    p.add_argument("--poll-window", type=float, help="seconds the polling cost is measured (default 30)")
    p.add_argument("--idle-seconds", type=float, help="how long the idle CPU is measured (default 30)")
    p.add_argument("--worker-files", type=int, help="files through the observer and a worker (default 5,000)")
    p.add_argument("--fan-top", type=int, help="fanotify-tree: directories at the top (default 1,000)")
    p.add_argument("--fan-sub", type=int, help="fanotify-tree: sub-directories of each (default 1,000)")
    p.add_argument("--fan-targets", type=int, help="fanotify-tree: directories the burst goes to (default 10,000)")
    p.add_argument("--fan-files", type=int, help="fanotify-tree: files of the burst (default 1,000,000)")
    p.add_argument("--straggler-timeout", type=float, help="wait for late events, seconds (default 120)")
    p.add_argument("--only", help=f"comma-separated workloads among {', '.join(WORKLOADS)} "
                                  "('paced' = every paced one)")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json",
                   help="where to write the figures (default bench/results/latest.json)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="record the observer with py-spy (first run of each workload) into DIR")
    p.add_argument("--source", type=Path, metavar="DIR",
                   help="measure the dirobserver package (and dropin) found in DIR, e.g. a "
                        "'git archive' of some commit, instead of this checkout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    quick = a.quick
    a.runs = a.runs or (1 if quick else 3)
    a.burst = a.burst or (20_000 if quick else 1_000_000)
    a.listing = a.listing or (20_000 if quick else 1_000_000)
    a.dirs = a.dirs or (200 if quick else 10_000)
    a.paced_seconds = a.paced_seconds or (1.0 if quick else 10.0)
    a.tree_files = a.tree_files or (20_000 if quick else 1_000_000)
    a.tree_dirs = a.tree_dirs or (200 if quick else 10_000)
    a.burst_dirs = a.burst_dirs or (100 if quick else 1_000)
    a.poll_files = a.poll_files or (10_000 if quick else 100_000)
    a.poll_window = a.poll_window or (5.0 if quick else 30.0)
    a.straggler_timeout = a.straggler_timeout or (30.0 if quick else 120.0)
    a.idle_seconds = a.idle_seconds or (1.0 if quick else 30.0)
    a.worker_files = a.worker_files or (300 if quick else 5_000)
    a.fan_top = a.fan_top or (10 if quick else 1_000)
    a.fan_sub = a.fan_sub or (10 if quick else 1_000)
    a.fan_targets = a.fan_targets or (20 if quick else 10_000)
    a.fan_files = a.fan_files or (2_000 if quick else 1_000_000)
    selected = []
    for name in (a.only or ",".join(WORKLOADS)).split(","):
        name = name.strip()
        # A full name is that workload alone ('burst' is not 'burst-closed').
        matches = [name] if name in WORKLOADS else [w for w in WORKLOADS if w.startswith(name + "-")]
        if not matches:
            p.error(f"unknown workload {name!r} (choose among {', '.join(WORKLOADS)})")
        selected += [m for m in matches if m not in selected]
    a.selected = [w for w in WORKLOADS if w in selected]
    return a


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _runner(name: str, ctx: Context, args: argparse.Namespace) -> Callable[[int], dict[str, Any]]:
    """
    One run of workload C{name}, as a function of the run's index; prepares
    what the runs share (the listing directory, the tree) first.  Partials
    bind every value now, so no run sees another workload's values.
    """
    if name.startswith("burst"):
        return partial(burst_run, ctx, args.burst, straggler_timeout=args.straggler_timeout,
                       closed=name == "burst-closed", once=name == "burst-once")
    if name in PACED:
        return partial(paced_run, ctx, name, args.paced_seconds)
    if name == "listing":
        files = listing_prepare(ctx, args.listing)
        return partial(listing_run, ctx, files, args.listing, timeout=max(60.0, args.straggler_timeout * 2))
    if name == "tree-listing":
        tree = tree_prepare(ctx, args.tree_files, args.tree_dirs)
        return partial(tree_listing_run, ctx, tree, args.tree_files, timeout=max(60.0, args.straggler_timeout * 2))
    if name == "tree-burst":
        # Ten files in each new sub-directory.
        return partial(tree_burst_run, ctx, args.burst_dirs, 10, straggler_timeout=args.straggler_timeout)
    if name == "poll-cost":
        return partial(poll_cost_run, ctx, args.poll_files, window=args.poll_window,
                       timeout=max(60.0, args.straggler_timeout))
    if name == "idle":
        return partial(idle_run, ctx, args.idle_seconds)
    if name in WORKERS:
        return partial(worker_run, ctx, name, args.worker_files, timeout=max(60.0, args.straggler_timeout * 2))
    if name == "fanotify-tree":
        fan_tree = fan_tree_prepare(ctx, args.fan_top, args.fan_sub, args.fan_files)
        # Watching a million directories takes minutes, not seconds.
        return partial(fan_tree_run, ctx, fan_tree, args.fan_targets, args.fan_files,
                       timeout=max(60.0, args.straggler_timeout * 5), straggler_timeout=args.straggler_timeout)
    return partial(dirs_run, ctx, args.dirs, timeout=max(60.0, args.straggler_timeout))


def _paced_title(name: str) -> str:
    paced = PACED[name]
    rate = f"{paced.rate // 1000}k" if paced.rate >= 1000 else str(paced.rate)
    if paced.closed:
        return f"paced {rate}/s closed"
    if paced.once:
        return f"paced {rate}/s announce_once"
    return f"paced {rate}/s" + (f" linger {paced.linger}" if paced.linger is not None else "")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.source is not None:
        if not (args.source / "dirobserver" / "__init__.py").is_file():
            print(f"--source {args.source}: no dirobserver package there", file=sys.stderr)
            return 2
        os.environ["DIROBSERVER_BENCH_SOURCE"] = str(args.source.resolve())
    signal.signal(signal.SIGTERM, _sigterm)
    # Even when started with SIGINT ignored (a background job of a script),
    # a Ctrl-C / SIGINT must stop the run and clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.time()
    info = machine()
    resources = Resources()
    results: dict[str, Any] = {}
    titles = {
        "burst": f"burst {args.burst:,}",
        "burst-closed": f"burst {args.burst:,} closed",
        "burst-once": f"burst {args.burst:,} announce_once",
        **{name: _paced_title(name) for name in PACED},
        "listing": f"listing {args.listing:,}",
        "dirs": f"{args.dirs:,} dirs",
        "tree-listing": f"tree {args.tree_files:,} / {args.tree_dirs:,}",
        "tree-burst": f"tree burst {args.burst_dirs:,}",
        "poll-cost": f"poll {args.poll_files:,}",
        "idle": "idle",
        **{name: f"worker {args.worker_files:,} --jobs={jobs}" for name, jobs in WORKERS.items()},
        "fanotify-tree": f"fanotify tree {args.fan_top:,} x {args.fan_sub:,}",
    }
    params = {
        "runs": args.runs, "burst": args.burst, "listing": args.listing, "dirs": args.dirs,
        "paced_seconds": args.paced_seconds, "straggler_timeout": args.straggler_timeout,
        "tree_files": args.tree_files, "tree_dirs": args.tree_dirs, "burst_dirs": args.burst_dirs,
        "poll_files": args.poll_files, "poll_window": args.poll_window, "idle_seconds": args.idle_seconds,
        "worker_files": args.worker_files,
        "fan_top": args.fan_top, "fan_sub": args.fan_sub, "fan_targets": args.fan_targets,
        "fan_files": args.fan_files,
        "quick": args.quick, "selected": args.selected,
    }
    interrupted = False
    try:
        root = scratch_root(resources)
        redis = redis_server(resources, root / "redis")
        info["valkey"] = redis.version()
        ctx = Context(resources, redis, root, profile_dir=args.profile, verbose=not args.quiet)
        log = ctx.say
        print(report.machine_line(info), flush=True)
        for name in args.selected:
            print(f"== {titles[name]} ({args.runs} run{'s' if args.runs > 1 else ''})", flush=True)
            t_workload = time.time()
            runs: list[dict[str, Any]] = []
            try:
                run_one = _runner(name, ctx, args)
                for i in range(args.runs):
                    figures = run_one(i)
                    runs.append(figures)
                    log(f"run {i + 1}: " + ", ".join(
                        f"{f.key}={figures[f.key]:.4g}" for f in report.figures_for(name)
                        if f.key in figures and f.table))
                results[name] = {
                    "title": titles[name],
                    "seconds": time.time() - t_workload,
                    # Other work on the machine skews every figure: keep a trace.
                    "loadavg_after": os.getloadavg()[0],
                    "figures": report.summarize(name, runs),
                    "runs": runs,
                }
            except KeyboardInterrupt:
                raise
            except Skipped as e:
                log(f"skipped: {e}")
                results[name] = {"title": titles[name], "skipped": str(e), "runs": runs}
            except Exception as e:
                traceback.print_exc()
                results[name] = {"title": titles[name], "error": f"{type(e).__name__}: {e}", "runs": runs}
            finally:
                shared = {"listing": "listing-files", "tree-listing": "tree-files", "fanotify-tree": "fanotify-tree"}
                if name in shared:
                    from tests.kit import remove_tree
                    remove_tree(root / shared[name])
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping every process and removing the scratch directories", file=sys.stderr)
    finally:
        resources.close()
    wall = time.time() - started
    data = {
        "machine": info,
        "params": params,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "wall_seconds": wall,
        "interrupted": interrupted,
        "workloads": results,
    }
    report.write_json(args.json, data)
    print()
    print(report.machine_line(info))
    print(report.table(titles, results))
    if "figures" in results.get("fanotify-tree", {}):
        print(f"\n{titles['fanotify-tree']}, side by side (medians):")
        print(side_by_side(results["fanotify-tree"]))
    print(f"\nwall time {wall:.0f} s; load average at the end {os.getloadavg()[0]:.2f}; figures in {args.json}")
    if interrupted:
        return 130
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
