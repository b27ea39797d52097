"""
What the soak says (L{say}): its progress lines during the run
(L{progress}), and after it the figures of the last line's JSON object
that the run does not count itself (each section's: L{section_figures};
the CPU time: L{cpu}; the worker's: L{worker_findings}; the sections that
announce once: L{once_findings}), the evidence kept in C{--artifacts}
(L{keep}: the observer's and the worker's logs, C{details.json}) and the
story of a failure (L{failure}).  The run itself is L{soak.__main__}.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from .consumer import Consumer
from .daemon import TRACEBACK, Daemon
from .faults import Timeline
from .kinds import Section
from .ledger import Ledger
from .once import OnceFindings
from .working import Watch, Worker


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def progress(t0: float, producers: list, consumers: list, timeline: Timeline, daemon: Daemon, rss: float) -> None:
    made = sum(p.made for p in producers)
    files = sum(c.files for c in consumers)
    events = sum(c.events for c in consumers)
    errors = sum(c.errors for c in consumers)
    refusals = sum(c.refusals for c in consumers)
    say(f"{time.time() - t0:7.1f}s  files {made} made, {files} received ({events} events); "
        f"faults {len(timeline.faults)}; observer starts {daemon.starts}, RSS {daemon.rss_mb():.0f} MiB "
        f"(max {rss:.0f}); consumer reconnects {errors}, reads refused {refusals}")


def section_figures(sections: list[Section], consumers: list, found: Any, ledger: Ledger) -> dict[str, Any]:
    """
    Each section's figures: files completed, due, unannounced, received,
    events, duplicates, and how often its queue was past its
    C{poll_queue_limit} (L{soak.backlog}).
    """
    unexpected: dict[str, int] = {}
    for _t, name, _n, _why in ledger.unexpected:
        unexpected[name] = unexpected.get(name, 0) + 1
    unannounced = [0] * len(sections)
    for i in found.unannounced:
        unannounced[ledger.section[i]] += 1
    out = {}
    for s, consumer in zip(sections, consumers, strict=True):
        k = s.index
        out[s.name] = {"files": found.section_files[k], "due": found.section_due[k],
                       "unannounced": unannounced[k], "received": found.section_received[k],
                       "events": consumer.events,
                       "backlog_windows": consumer.backlog.windows if isinstance(consumer, Consumer) else 0,
                       "duplicates": consumer.events - found.section_received[k] - unexpected.get(s.name, 0)}
    return out


def cpu() -> dict[str, float]:
    """CPU seconds of this process, and of its children that ended (observers, Redis servers)."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"soak": round(me.ru_utime + me.ru_stime, 1), "children": round(children.ru_utime + children.ru_stime, 1)}


def worker_findings(watch: Watch, worker: Worker, status: int | None, problems: list[str]) -> dict[str, Any]:
    """
    The worker's figures (the JSON's C{worker}), said; what it broke is
    added to C{problems}.

    @param status: its exit status on the final SIGTERM.
    """
    worked_files: dict[str, Any] = {**watch.findings(), "tracebacks": worker.count(TRACEBACK),
                                    "exit_status": status}
    say(f"worker of [{watch.section.name}]: {worked_files['run']} files run ({worked_files['runs']} runs), "
        f"{worked_files['filed']} filed in done/, {worked_files['failed']} in failed/, "
        f"{worked_files['lost']} lost, {worked_files['left_claimed']} left claimed; "
        f"{worked_files['take_overs']} take-overs, {worked_files['recovered']} claims recovered; "
        f"{worked_files['starts']} starts, exit status {status}")
    for key, what in (("lost", "run and never filed"), ("filed_not_run", "filed without a run"),
                      ("failed", "filed in failed/"), ("left_claimed", "left claimed"),
                      ("tracebacks", "tracebacks in the worker's log")):
        if worked_files[key]:
            problems.append(f"worker: {worked_files[key]} {what}")
    return worked_files


def once_findings(once: list[OnceFindings], ledger: Ledger, readings: int, problems: list[str]) -> None:
    """
    Say what was found of each section that announces once (L{soak.once});
    one with too many duplicates unexplained is added to C{problems}.

    @param readings: how many times the records were read (L{soak.record_watch}).
    """
    for o in once:
        say(f"[{o.section}] (announce_once): {o.files} files, {o.duplicates} duplicate events "
            f"({o.listed} from listings); explained: {o.redis_lost} lost by Redis, {o.after_fault} after "
            f"a fault; {len(o.unexplained)} unexplained (allowance {o.allowance}); "
            f"{len(ledger.cuts)} cuts of Redis's history in {readings} readings")
        if not o.passed:
            problems.append(f"[{o.section}] (announce_once): {len(o.unexplained)} duplicates unexplained, "
                            f"more than 0.1% of its {o.files} files ({o.allowance})")


def keep(out: Path, replay: str, t0: float, end: float, ledger: Ledger, found: Any, timeline: Timeline,
         daemon: Daemon, problems: list[str], result: dict[str, Any], once: list[OnceFindings]) -> Path:
    """Write the evidence of a run to C{out}: the observer's log and C{details.json}."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(daemon.log, out / "observer.log")
    worker_log = daemon.workdir / "worker" / "worker.log"
    if worker_log.exists():
        shutil.copy(worker_log, out / "worker.log")
    details = {
        "result": result, "replay": replay, "t0": t0, "problems": problems, "faults": timeline.faults,
        "unannounced": _sample(ledger, found.unannounced, t0, end),
        "announced_early": _sample(ledger, found.early, t0, end),
        "unexpected_names": [(round(t - t0, 3), s, n, why) for t, s, n, why in ledger.unexpected[:200]],
        "unexplained_duplicates": {o.section: [{**ledger.describe(i, t0, end), "duplicate": round(t - t0, 3),
                                                "event": event} for i, t, event in o.unexplained[:100]]
                                   for o in once},
        "explained_duplicates": {o.section: [{**ledger.describe(i, t0, end), "duplicate": round(t - t0, 3),
                                              "event": event, "reason": why} for i, t, event, why in o.explained[:500]]
                                 for o in once},
    }
    (out / "details.json").write_text(json.dumps(details, indent=1))
    return out


def _sample(ledger: Ledger, ids: list[int], t0: float, end: float, each: int = 100) -> dict[str, Any]:
    """How many files of each section failed, and the stories of the first C{each} of every section.

    A per-section sample, because one fault can fail thousands of files of
    one section and hide a few of another's behind them.
    """
    by_section: dict[str, list[int]] = {}
    for i in ids:
        by_section.setdefault(ledger.sections[ledger.section[i]].name, []).append(i)
    return {name: {"count": len(found), "first": [ledger.describe(i, t0, end) for i in found[:each]]}
            for name, found in by_section.items()}


def failure(seed: int, replay: str, t0: float, end: float, ledger: Ledger, found: Any,
            timeline: Timeline, problems: list[str], once: list[OnceFindings]) -> None:
    print(f"\nFAILED (seed {seed}; replay: {replay})", flush=True)
    for problem in problems:
        print(f"  problem: {problem}")
    for title, ids in (("unannounced", found.unannounced), ("announced early", found.early)):
        if ids:
            print(f"  {len(ids)} files {title}, the first ones:")
            for i in ids[:10]:
                print(f"    {json.dumps(ledger.describe(i, t0, end))}")
    for t, section, name, why in ledger.unexpected[:10]:
        print(f"  announced {name!r} in [{section}] at {t - t0:.2f} s: {why}")
    for o in once:
        if not o.passed:
            print(f"  [{o.section}]: {len(o.unexplained)} unexplained duplicates, the first ones:")
            for i, t, event in o.unexplained[:10]:
                print(f"    {event} at {t - t0:.2f} s: {json.dumps(ledger.describe(i, t0, end))}")
    print("  fault timeline (seconds since the start):")
    for line in timeline.lines():
        print(f"    {line}")

