"""
Figures, targets, the table and the JSON file.

Each workload has a list of L{Figure}s.  A figure's value is the median of
its runs, except for correctness counts (files never announced, backlog
growth) where the worst run is what matters: those use C{max}.
"""

from __future__ import annotations

import json
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    op: str  # "<=", ">=", "=="
    value: float
    relative_to: str | None = None  # key of another figure (a ratio's base)

    _OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}

    def met(self, value: float) -> bool:
        return bool(self._OPS[self.op](value, self.value))

    def text(self, fmt: Callable[[float], str]) -> str:
        return f"{self.op} {fmt(self.value)}"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str = ""
    target: Target | None = None
    worst: bool = False  # aggregate with max instead of the median
    kind: str = "num"  # "rate", "ms", "s", "mb", "int", "ratio", "bool", "num"
    table: bool = True  # a row of the table (else in the JSON only, or a table of its workload)


def _fmt(kind: str) -> Callable[[float], str]:
    return {
        "rate": lambda v: f"{v:,.0f}",
        "int": lambda v: f"{v:,.0f}",
        "ms": lambda v: f"{v:.2f}",
        "s": lambda v: f"{v:.2f}",
        "mb": lambda v: f"{v:.1f}",
        "ratio": lambda v: f"{v:.1%}",
        "bool": lambda v: "yes" if v else "no",
        "num": lambda v: f"{v:.3g}",
    }[kind]


COMMON = [
    Figure("cpu_per_100k", "observer CPU per 100k events", "s", kind="s"),
    Figure("peak_rss_mb", "observer peak RSS", "MiB", kind="mb"),
]

#: Where a burst's CPU went (L{bench.burst.cpu_budget}).
BUDGET = [
    Figure("creator_cpu_per_100k", "creator CPU per 100k files", "s", kind="s"),
    Figure("redis_cpu_per_100k", "Redis CPU per 100k files", "s", kind="s"),
    Figure("consumer_cpu_per_100k", "bench consumer CPU per 100k files", "s", kind="s"),
    Figure("cpu_bound_ratio", "delivered / creation the CPU allows (all cores busy)", "", kind="ratio"),
]

#: The size of the C{announce_once} record after a run (burst-once).
RECORD = [
    Figure("record_fields", "record fields (HLEN)", "fields", kind="int"),
    Figure("record_bytes_per_file", "record's Redis memory per file", "bytes", kind="num"),
]


def figures_for(workload: str) -> list[Figure]:
    if workload.startswith("burst"):
        # Closed files cost three inotify events each (created, opened, closed).
        ratio = Target(">=", 0.80 if workload == "burst-closed" else 0.90)
        return [
            Figure("creation_rate", "creation rate", "files/s", kind="rate"),
            Figure("delivered_rate", "delivered rate (first create -> all in Redis)", "events/s", kind="rate"),
            Figure("ratio", "delivered / creation", "", ratio, kind="ratio"),
            Figure("missing", "files never announced (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("duplicates", "duplicate events", "events", kind="int"),
            Figure("catch_up_s", "last create -> all announced", "s", kind="s"),
            Figure("overflows", "kernel queue overflows", "", kind="int"),
        ] + COMMON + BUDGET + (RECORD if workload == "burst-once" else [])
    if workload.startswith("paced"):
        from .paced import PACED

        paced = PACED[workload]
        closed, rate = paced.closed, paced.rate
        after = " (close -> BRPOP)" if closed else ""
        since = "close" if closed else "create"
        lingers = paced.linger != "0"  # the default linger
        cpu = None
        if closed:
            p50, p99, backlog = None, Target("<=", 10.0), None
        elif rate <= 1000:
            # With the linger an event may be held for it (5 ms by default);
            # without, each is sent as it comes.
            p50, p99, backlog = (None, Target("<=", 10.0), None) if lingers else \
                (Target("<=", 1.0), Target("<=", 2.0), None)
            if lingers and rate == 1000:
                cpu = Target("<=", 5.0)
        else:
            p50, p99, backlog = None, Target("<=", 20.0), Target("==", 0)
            if lingers and rate == 20000 and not paced.once:
                cpu = Target("<=", 25.0)
        return [
            Figure("rate", "achieved creation rate", "files/s", kind="rate"),
            Figure("cpu_percent", "observer CPU (% of a core)", "%", cpu, kind="ms"),
            Figure("p50_ms", f"latency p50{after}", "ms", p50, kind="ms"),
            Figure("p99_ms", f"latency p99{after}", "ms", p99, kind="ms"),
            Figure("max_ms", "latency max", "ms", kind="ms"),
            Figure("detect_p50_ms", f"{since} -> detected p50 (event_timestamp)", "ms", kind="ms"),
            Figure("detect_p99_ms", f"{since} -> detected p99 (event_timestamp)", "ms", kind="ms"),
            Figure("backlog_grew", "backlog grew (worst run)", "", backlog, worst=True, kind="bool"),
            Figure("llen_max", "LLEN max sampled", "events", kind="int"),
            Figure("missing", "files never announced (worst run)", "files", Target("==", 0), worst=True, kind="int"),
        ] + COMMON
    if workload == "listing":
        return [
            Figure("all_announced_s", "start -> all 'exists' in Redis", "s", Target("<=", 10.0), kind="s"),
            Figure("ready_s", "start -> ready", "s", kind="s"),
            Figure("other_worst_ms", "other directory worst latency", "ms", Target("<=", 100.0), kind="ms"),
            Figure("other_p50_ms", "other directory latency p50", "ms", kind="ms"),
            Figure("other_detect_worst_ms", "other dir. create -> detected, worst", "ms", kind="ms"),
            Figure("other_missing", "other dir. files not received (worst run)", "files", Target("==", 0),
                   worst=True, kind="int"),
            Figure("missing", "files never announced (worst run)", "files", Target("==", 0), worst=True, kind="int"),
        ] + COMMON
    if workload == "dirs":
        return [
            Figure("ready_s", "start -> ready", "s", Target("<=", 5.0), kind="s"),
            Figure("delivered", "files delivered (worst run)", "files", kind="int"),
            Figure("missing", "files never announced (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("delivery_s", "first create -> all delivered", "s", kind="s"),
            Figure("cpu_per_100k", "observer CPU per 100k events", "s", kind="s"),
            Figure("peak_rss_mb", "observer peak RSS", "MiB", Target("<=", 150.0), kind="mb"),
        ]
    if workload == "idle":
        return [
            Figure("cpu_percent", "observer CPU, nothing happening (% of a core)", "%", Target("<=", 0.1),
                   kind="num"),
            Figure("peak_rss_mb", "observer peak RSS", "MiB", kind="mb"),
        ]
    if workload == "tree-listing":
        return [
            Figure("all_announced_s", "start -> all 'exists' in Redis", "s", Target("<=", 15.0), kind="s"),
            Figure("ready_s", "start -> ready", "s", kind="s"),
            Figure("missing", "files never announced (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("misplaced", "sampled events with a wrong directory", "events", Target("==", 0), worst=True,
                   kind="int"),
        ] + COMMON
    if workload == "tree-burst":
        return [
            Figure("creation_rate", "creation rate (mkdir -p + files)", "files/s", kind="rate"),
            Figure("missing", "files never announced (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("duplicates", "duplicate events", "events", kind="int"),
            Figure("misplaced", "sampled events with a wrong directory", "events", Target("==", 0), worst=True,
                   kind="int"),
            Figure("catch_up_s", "last create -> all announced", "s", kind="s"),
            Figure("overflows", "kernel queue overflows", "", kind="int"),
        ] + COMMON
    if workload == "poll-cost":
        return [
            Figure("cpu_percent", "observer CPU while polling (% of a core)", "%", Target("<=", 5.0), kind="ms"),
            Figure("scan_ms", "CPU per scan", "ms", kind="ms"),
            Figure("detect_p50_s", "create -> detected p50", "s", kind="s"),
            Figure("detect_max_s", "create -> detected max", "s", kind="s"),
            Figure("missing", "new files never announced (worst run)", "files", Target("==", 0), worst=True,
                   kind="int"),
            Figure("scan_memory_mb", "memory of a scan, per 1,000,000 names", "MiB", Target("<=", 100.0),
                   kind="mb"),
            Figure("peak_rss_mb", "observer peak RSS", "MiB", kind="mb"),
        ]
    if workload.startswith("worker"):
        return [
            Figure("files_per_s", "files/s (first create -> all in done/, queue empty)", "files/s",
                   kind="rate"),
            Figure("observer_cpu_percent", "observer CPU (% of a core)", "%", kind="ms"),
            Figure("worker_cpu_percent", "worker CPU (% of a core; not its commands)", "%", kind="ms"),
            Figure("worker_peak_rss_mb", "worker peak RSS", "MiB", kind="mb"),
            Figure("missing", "files not in done/ (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("run_twice", "files run twice (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("failed", "files in failed/ (worst run)", "files", Target("==", 0), worst=True, kind="int"),
            Figure("peak_rss_mb", "observer peak RSS", "MiB", kind="mb"),
        ]
    if workload == "fanotify-tree":
        return _fanotify_tree_figures()
    raise KeyError(workload)


def _fanotify_tree_figures() -> list[Figure]:
    """
    Each measure in each mode (in the table of L{bench.fanotify_tree.side_by_side}),
    and in the main table the ratios issue 23 sets targets for, and the files lost.
    """
    from .fanotify_tree import MEASURES

    less = Target("<=", 1.0)
    targets = {"watching_s": less, "watch_rss_mb": less, "marks_mb": less}
    figures = []
    for key, label, unit, kind, compared in MEASURES:
        counted = not compared
        for mode in ("fanotify", "inotify"):
            figures.append(Figure(f"{mode}_{key}", f"{mode}: {label}", unit,
                                  Target("==", 0) if key in ("missing", "misplaced") else None,
                                  worst=counted, kind=kind, table=key == "missing"))
        if compared:
            figures.append(Figure(f"ratio_{key}", f"fanotify / inotify: {label}", "", targets.get(key),
                                  kind="num", table=key in targets))
    return figures


def summarize(workload: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of a workload: aggregate of the runs, target, met."""
    out = {}
    for fig in figures_for(workload):
        values = [float(r[fig.key]) for r in runs if fig.key in r]
        if not values:
            continue
        if fig.worst:
            # "delivered" is worst at its minimum, every other such count at its max.
            value = min(values) if fig.key == "delivered" else max(values)
        else:
            value = statistics.median(values)
        out[fig.key] = {
            "label": fig.label,
            "unit": fig.unit,
            "value": value,
            "runs": values,
            "target": f"{fig.target.op} {fig.target.value:g}" if fig.target else None,
            "met": fig.target.met(value) if fig.target else None,
        }
    return out


def table(title_of: dict[str, str], results: dict[str, Any]) -> str:
    rows = [("workload", "figure", "median", "target", "met?")]
    for name, result in results.items():
        if "error" in result:
            rows.append((title_of.get(name, name), "ERROR", result["error"][:60], "", "NO"))
            continue
        first = True
        if "skipped" in result:
            rows.append((title_of.get(name, name), "skipped", result["skipped"][:60], "", "-"))
            continue
        for fig in figures_for(name):
            entry = result["figures"].get(fig.key)
            if entry is None or not fig.table:
                continue
            fmt = _fmt(fig.kind)
            value = fmt(entry["value"]) + (f" {fig.unit}" if fig.unit and fig.kind != "ratio" else "")
            target = fig.target.text(fmt) if fig.target else "-"
            if fig.target and fig.kind not in ("ratio", "bool") and fig.unit:
                target += f" {fig.unit}"
            met = "-" if entry["met"] is None else ("yes" if entry["met"] else "NO")
            rows.append((title_of.get(name, name) if first else "", fig.label, value, target, met))
            first = False
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for j, r in enumerate(rows):
        # The value (third column) to the right, the others to the left.
        cells = (c.rjust(widths[i]) if i == 2 else c.ljust(widths[i]) for i, c in enumerate(r))
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['cores']} cores, {m['cpu']}, Linux {m['kernel']}, "
        f"Python {m['python']}, Twisted {m['twisted']}"
        + (f", valkey {m['valkey']}" if m.get("valkey") else "")
        + (f"; load average {m['loadavg_at_start']:.2f} at start" if "loadavg_at_start" in m else "")
    )


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
