"""
The observer's CPU when nothing happens (C{idle}).
"""

from __future__ import annotations

import time
from typing import Any

from tests.kit import remove_tree

from .context import Context, finish

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
    figures = finish(observer, profiler, cpu0, 0)
    # utime + stime count in clock ticks (10 ms): over 30 s, one tick is 0.033%.
    figures["cpu_percent"] = figures["cpu_s"] / elapsed * 100.0
    remove_tree(work)
    return figures
