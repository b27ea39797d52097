"""
``python -m bench.floor [--rate 1000] [--seconds 10] [--runs 3] [--only KIND,...]``

The CPU floor of the observer's job at a steady rate: one file created, one
C{LPUSH} of its ~150-byte JSON event to Redis, acknowledged.  The same paced
creator as the benchmark's (L{bench.creator}, files on tmpfs) feeds a ladder
of implementations, from the least that can be done to the observer itself,
each in a process of its own so that its CPU (user and system time from
C{/proc/PID/stat}) is measured alone:

 1. C{inotifywait}: C{inotifywait -m} to C{/dev/null} (inotify-tools), the
    cost of being told of a file at all, in C, without Redis;
 2. C{epoll}: a minimal Python loop (see L{bench.floor.rungs}): two
    wake-ups per file, the inotify read and then Redis's reply;
 3. C{epoll-lazy}: the same loop taking the reply at the next wake-up: one
    wake-up per file;
 4. C{epoll-linger}: the lazy loop that gathers: after a read that found
    files it naps for the observer's default C{linger} (5 ms), then reads
    what came and the replies at once: one wake-up per linger, not per file;
 5. C{twisted}: the reactor, Twisted's C{INotify} and a bare protocol;
 6. C{observer}: ``twistd -n dirobserver`` with one section (the default
    C{linger}), and C{observer-linger0}: the same with C{linger = 0}.

Why: a process that sends each file to Redis as it comes pays, per file,
at least a wake-up, a read of the inotify descriptor, a C{send} on loopback
(which also runs Redis's side of TCP delivery) and a C{recv}.  Rungs 2 and 3
pay that and next to nothing else, so no Python design that keeps one round
per file can go below them; rung 4 is the floor of a design that gathers
for a linger (one round per linger, whatever the rate above one file per
linger), the one to compare the observer with; rung 1 is what being told of
a file costs at all, rung 5 what an event loop's dispatch adds (Twisted's
buffered write takes a turn of its own), and the gap between 4 and 6 is the
reactor and the observer's own machinery (filters, JSON, the writer's rounds
and resend bookkeeping, C{MULTI}/C{EXEC} around the C{LPUSH}).

Shown per file: CPU (the run of median CPU, and the spread over the runs),
the passes of the loop (returns from C{epoll_wait}, counted by rungs 2-5),
the voluntary context switches (each a sleep in C{epoll_wait} that ended),
and for rungs 2-5 the files whose reply was read.  The percentage of a core
is the CPU per second of creation (µs per file times the rate).  Runs are
taken in turns, so that other work on the machine weighs on every rung
alike.  The split between user and system time is on the lines of the runs
only: a kernel that accounts CPU by ticks samples it (the total is exact).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.kit import REPO_ROOT, Resources, scratch_root, spawn
from tests.kit.processes import cpu_split

from ..context import Context
from ..harness import Creator, machine, redis_server
from ..report import machine_line

KINDS = ("inotifywait", "epoll", "epoll-lazy", "epoll-linger", "twisted", "observer", "observer-linger0")
QUEUE = "q:floor"
COLUMNS = (  # key, title, format
    ("cpu_pct", "% core", "{:.1f}"),
    ("us_per_file", "µs/file", "{:.0f}"),
    ("turns", "turns/file", "{:.2f}"),
    ("switches", "switches/file", "{:.2f}"),
    ("in_redis", "in Redis", "{:.0f}"),
    ("acked", "acked", "{:.0f}"),
)


def _switches(pid: int) -> int:
    """Voluntary context switches of every thread of a process."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def _start(ctx: Context, kind: str, work: Any, directory: Any) -> tuple[int, Callable[[], dict[str, Any]]]:
    """Start one implementation watching C{directory}: its pid, and how to stop it (its counts)."""
    if kind.startswith("observer"):
        section = {"name": "floor", "directory": str(directory), "queue": QUEUE}
        if kind == "observer-linger0":
            section["linger"] = "0"
        observer = ctx.observer(work, [section])
        observer.wait_ready()
        return observer.pid, lambda: (observer.stop(), {})[1]
    if kind == "inotifywait":
        waiter = ctx.resources.process(spawn(["inotifywait", "-m", "-e", "create", str(directory)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        assert waiter.stderr is not None  # a pipe, asked for above
        while b"Watches established" not in waiter.stderr.readline():
            if waiter.poll() is not None:
                raise RuntimeError(f"inotifywait exited with {waiter.returncode}")

        def stop_waiter() -> dict[str, Any]:
            waiter.terminate()
            waiter.wait(10)
            return {}

        return waiter.pid, stop_waiter
    ctx.client.delete(QUEUE)
    proc = ctx.resources.process(spawn([sys.executable, "-m", "bench.floor.rungs", kind, str(directory),
                                        str(ctx.redis.port), QUEUE], stdout=subprocess.PIPE, cwd=str(REPO_ROOT)))
    assert proc.stdout is not None  # a pipe, asked for above
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"{kind} did not start: {line!r}")

    def stop() -> dict[str, Any]:
        import json

        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        return json.loads(out.decode().strip().splitlines()[-1])

    return proc.pid, stop


def measure(ctx: Context, kind: str, rate: float, seconds: float, run: int) -> dict[str, float]:
    """One run of one implementation: C{rate} files a second for C{seconds}."""
    work = ctx.fresh(f"{kind}-{run}")
    directory = work / "in"
    directory.mkdir()
    pid, stop = _start(ctx, kind, work, directory)
    user0, sys0 = cpu_split(pid)
    switches0 = _switches(pid)
    made = Creator(ctx.resources, "paced", directory, rate, seconds, work / "times.bin").result(seconds + 120)
    count = made["count"]
    # Done when every event is in Redis (or, for inotifywait, shortly after
    # the last file: it has nothing to report).
    deadline = time.monotonic() + (0.2 if kind == "inotifywait" else 10.0)
    in_redis = 0
    while time.monotonic() < deadline:
        if kind != "inotifywait":
            in_redis = ctx.client.llen(QUEUE)
            if in_redis >= count:
                # Time for the last reply to be read (epoll-lazy: its timer).
                time.sleep(0.05)
                break
        time.sleep(0.01)
    user1, sys1 = cpu_split(pid)
    switches = _switches(pid) - switches0
    counts = stop()
    per_file = 1e6 / count
    user, system = (user1 - user0) * per_file, (sys1 - sys0) * per_file
    return {
        "cpu_pct": (user + system) * rate / 1e4,
        "us_per_file": user + system,
        "user_us": user,
        "sys_us": system,
        "turns": counts["turns"] / count if "turns" in counts else float("nan"),
        "switches": switches / count,
        "in_redis": float(in_redis) if kind != "inotifywait" else float("nan"),
        "acked": float(counts["acked"]) if "acked" in counts else float("nan"),
        "files": float(count),
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median CPU (the lower one of an even count), so that its figures add up."""
    ordered = sorted(runs, key=lambda r: r["us_per_file"])
    return ordered[(len(ordered) - 1) // 2]


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """One line per implementation: its run of median CPU."""
    rows = [["implementation"] + [title for _, title, _ in COLUMNS] + ["files"]]
    rows[0].insert(3, "of runs")
    for kind, runs in results.items():
        if not runs:
            continue
        middle = median_run(runs)
        cells = [kind]
        for key, _, fmt in COLUMNS + (("files", "", "{:.0f}"),):
            cells.append("-" if middle[key] != middle[key] else fmt.format(middle[key]))
        spread = [r["us_per_file"] for r in runs]
        cells.insert(3, f"{min(spread):.0f}-{max(spread):.0f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[1])
    p.add_argument("--rate", type=float, default=1000.0, help="files a second (default 1000)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of each run (default 10)")
    p.add_argument("--runs", type=int, default=3, help="runs of each implementation (default 3)")
    p.add_argument("--only", help=f"comma-separated, among {', '.join(KINDS)}")
    args = p.parse_args(argv)
    kinds = [k for k in (args.only.split(",") if args.only else KINDS) if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown implementation(s) {', '.join(sorted(unknown))}; choose among {', '.join(KINDS)}")
    if "inotifywait" in kinds and not shutil.which("inotifywait"):
        print("inotifywait: not installed (apt-get install inotify-tools), skipped", flush=True)
        kinds.remove("inotifywait")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    info = machine()
    resources = Resources()
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    try:
        root = scratch_root(resources)
        redis = redis_server(resources, root / "redis")
        info["valkey"] = redis.version()
        ctx = Context(resources, redis, root)
        print(machine_line(info), flush=True)
        print(f"{args.rate:.0f} files/s for {args.seconds:g} s, {args.runs} run(s) each", flush=True)
        for run in range(args.runs):
            for kind in kinds:
                figures = measure(ctx, kind, args.rate, args.seconds, run)
                results[kind].append(figures)
                print(f"    run {run + 1} {kind}: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()),
                      flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        resources.close()
    print()
    print(table(results))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
