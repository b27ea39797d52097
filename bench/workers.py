"""
The workloads of the worker's half (C{twistd dirobserver-worker}): files
per second through the observer and one worker with a no-op command
(C{true}), so that the row measures the pipeline (announce, take, claim,
run, file, acknowledge) and not a command.

 - ``worker-1``: the worker with C{--jobs=1};
 - ``worker-4``: with C{--jobs=4}.

Like L{bench.burst}, each run has a fresh observer (and worker) and
returns its figures.  The run is timed from the first file created until
every file is in C{done/} and the queue and the worker's processing list
are empty; then every file must be in C{done/} (none in C{failed/}, none
left in the directory), and the worker's log must hold exactly one
"exit 0" line per file: a file run twice would be two.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tests.kit import remove_tree
from tests.kit.processes import cpu_seconds, peak_rss_mb
from tests.kit.worker import LoggedWorker

from .context import Context, finish
from .harness import Creator

#: The worker workloads by name: the worker's C{--jobs}.
WORKERS = {"worker-1": 1, "worker-4": 4}

#: The worker's per-file line of a command that exited 0 (L{dirobserver.worker.service}).
RAN = b": exit 0 in "


def _count(directory: Path) -> int:
    """Entries of a directory (0 when it does not exist yet)."""
    try:
        return len(os.listdir(directory))
    except FileNotFoundError:
        return 0


def _queued(client: Any, queue: str) -> int:
    """Events in the queue and in every worker's processing list."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    for key in client.keys(f"{queue}:processing:*"):
        pipe.llen(key)
    return sum(pipe.execute())


def worker_run(ctx: Context, name: str, n: int, run: int, timeout: float) -> dict[str, Any]:
    """
    C{n} files created as fast as possible in a directory the observer
    announces to a list and one worker (C{--jobs} of L{WORKERS}) runs
    C{true} on and files in C{done/}.
    """
    jobs = WORKERS[name]
    work = ctx.fresh(f"{name}-{run}")
    directory, done, failed = work / "in", work / "done", work / "failed"
    directory.mkdir()
    queue = "q:work"
    observer = ctx.observer(work, [{"name": "work", "directory": str(directory), "queue": queue}])
    worker = LoggedWorker(ctx.resources, work / "observer.ini", work, "work",
                          [f"--jobs={jobs}", f"--done={done}", f"--failed={failed}"], ["true"])
    observer.wait_ready()
    worker.wait_ready()
    cpu0, worker_cpu0 = observer.cpu(), cpu_seconds(worker.pid)
    profiler = ctx.profiler(observer, name, run)
    client = ctx.client

    creator = Creator(ctx.resources, "burst", directory, n)
    made: dict[str, Any] | None = None
    t_all: float | None = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        if made is None and not creator.running():
            made = creator.result()
            ctx.say(f"created {made['count']} files at {made['rate']:,.0f}/s")
        # Counting done/ is cheap; the queues are asked only once it is full.
        if made is not None and _count(done) >= n and _queued(client, queue) == 0:
            t_all = time.time()
            break
        time.sleep(0.01)
    if made is None:
        made = creator.result()
    worker_cpu = cpu_seconds(worker.pid) - worker_cpu0
    worker_rss = peak_rss_mb(worker.pid)
    figures = finish(observer, profiler, cpu0, n)
    worker_errors = worker.errors()
    worker_status = worker.stop()
    runs = worker.log_count(RAN)
    filed = _count(done)
    span = (t_all - made["t_first"]) if t_all else 0.0
    figures.update(
        {
            "files_per_s": n / span if span > 0 else 0.0,
            "span_s": span if t_all else timeout,
            "creation_rate": made["rate"],
            "observer_cpu_percent": figures["cpu_s"] / span * 100.0 if span > 0 else 0.0,
            "worker_cpu_s": worker_cpu,
            "worker_cpu_percent": worker_cpu / span * 100.0 if span > 0 else 0.0,
            "worker_peak_rss_mb": worker_rss,
            "filed": float(filed),
            "missing": float(n - filed),
            "failed": float(_count(failed)),
            "left_in_directory": float(_count(directory)),
            "runs": float(runs),
            "run_twice": float(max(0, runs - filed)),
            "worker_log_errors": float(worker_errors),
            "worker_exit": float(worker_status if worker_status is not None else -1),
        }
    )
    remove_tree(work)
    return figures
