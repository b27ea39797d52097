"""
``python -m soak --minutes N [--seed S]``: the delivery guarantee under
random faults.

One observer (a real ``twistd -n dirobserver`` subprocess), a real Redis
(the bundled valkey-server), one section per mode the observer supports
(L{soak.kinds}), a producer and a consumer per section
(L{soak.producer}, L{soak.consumer}) but for the worker's section, which a real
``twistd dirobserver-worker`` consumes (L{soak.working}), and two lanes of
random faults (L{soak.faults}) against the observer (L{soak.daemon}).  After N
minutes the faults and the producers stop, the consumers get what is still due,
the observer gets its SIGTERM, and the checker (L{soak.checker}) goes through
every file of the ledger (L{soak.ledger}).  This module parses the command line
and runs the soak; what it says, the JSON object's figures and the evidence it
keeps come from L{soak.report}, and C{--source} is L{soak.source}'s.

The last line of the output is one JSON object::

    {"seed", "minutes", "files", "faults", "unannounced", "announced_early",
     "duplicates", "max_rss_mb", "tracebacks", "lost_by_redis", ...,
     "worker": {"run", "runs", "filed", "failed", "lost", "filed_not_run",
                "left_claimed", "starts", "tracebacks", "exit_status"},
     "sections": {NAME: {"files", "due", "unannounced", "received", "events", "duplicates",
                         "backlog_windows"}},
     "once": {NAME: {"files", "duplicates", "listed", "explained", "unexplained", "allowance", "passed"}},
     "record_readings", "history_cuts"}

(C{lost_by_redis}: files announced, then lost with Redis's data, and gone
before the observer's insurance listing could announce them again; they
are no failure: see L{soak.checker}.)

The exit status is 1 when a file was unannounced or announced early, a
name was announced that should not have been, the observer logged a
traceback, exceeded C{--max-rss}, exited on its own or not with 0 on the
final SIGTERM; or when the worker ran a file it did not file in C{done/}
(lost), filed one in C{failed/} or without running it, left one claimed,
logged a traceback, exited on its own or not with 0 on its SIGTERM;
or when a section with C{announce_once} had more duplicates without a
reason than 0.1% of its files (L{soak.once}); 0 otherwise.  A failure prints the seed and the fault
timeline, and keeps the observer's log and the details in C{--artifacts}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.kit import Resources, scratch_root

from . import report
from .checker import RECOVERY
from .consumer import Consumer
from .daemon import OVERFLOWED, TRACEBACK, Daemon
from .faults import DIRECTORY, FAULTS, PROCESS, Lane, Soak, Timeline
from .kinds import ObserverConfig, Section, available_kinds, unavailable
from .ledger import Ledger
from .once import judge
from .process_faults import queued_events
from .producer import Producer
from .record_watch import RecordWatch
from .report import say
from .servers import SentinelSet, Single
from .source import LINKS, again_on, imported_from
from .working import Watch, Worker


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--minutes", type=float, default=1.0, help="how long producers and faults run (default 1)")
    p.add_argument("--seed", type=int, help="seed of every random choice (default: a random one, printed)")
    p.add_argument("--rate", type=float, default=1.0, help="scale of the producers' steady rates (default 1)")
    p.add_argument("--fault-gap", type=float, default=6.0,
                   help="mean seconds between two faults of the process lane (the directory lane: twice that)")
    p.add_argument("--faults", help="comma-separated fault names to choose from (default: all): "
                   + ", ".join(f.name for f in FAULTS))
    p.add_argument("--max-rss", type=float, default=300.0, help="the observer's RSS bound, MiB (default 300)")
    p.add_argument("--artifacts", type=Path,
                   help="keep the observer's log, the timeline and the details there (by default only on "
                        "failure, in /tmp/dirobserver-soak-SEED)")
    p.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    p.add_argument("--redis", choices=("auto", "single", "sentinel"), default="auto",
                   help="one server, or a Sentinel set (auto: a Sentinel set when the observer knows "
                        "redis_sentinels)")
    p.add_argument("--source", type=Path, metavar="DIR",
                   help="soak the dirobserver package (and dropin) found in DIR, e.g. a 'git archive' "
                        "of a branch, instead of this checkout")
    a = p.parse_args(argv)
    a.only = None
    if a.faults:
        a.only = {name.strip() for name in a.faults.split(",")}
        unknown = a.only - {f.name for f in FAULTS}
        if unknown:
            p.error(f"unknown faults: {', '.join(sorted(unknown))}")
    return a


def _without_seed(argv: list[str]) -> list[str]:
    """The command line's arguments but C{--seed} (the replay names the seed drawn)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--seed":
            skip = True
        elif not arg.startswith("--seed="):
            out.append(arg)
    return out


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    replay = " ".join(["python -m soak", *_without_seed(argv), "--seed", str(seed)])
    signal.signal(signal.SIGTERM, _interrupted)
    if args.source is not None:
        if not (args.source / "dirobserver" / "__init__.py").is_file():
            print(f"--source {args.source}: no dirobserver package there", file=sys.stderr)
            return 2
        if os.environ.get("DIROBSERVER_BENCH_SOURCE") != str(args.source.resolve()):
            again_on(args.source.resolve(), argv)  # does not return
        if not imported_from(args.source.resolve()):
            print("--source needs Python 3.11 or later (PYTHONSAFEPATH)", file=sys.stderr)
            return 2
    kinds = available_kinds()
    say(f"soak: seed {seed}, {args.minutes:g} min, kinds {', '.join(k.name for k in kinds)} (replay: {replay})")
    resources = Resources()
    if os.environ.get(LINKS):
        resources.directory(Path(os.environ[LINKS]))
    try:
        return _run(args, seed, kinds, resources, replay)
    except KeyboardInterrupt:
        say("interrupted: stopping every process")
        return 130
    finally:
        resources.close()


def _run(args: argparse.Namespace, seed: int, kinds: list, resources: Resources, replay: str) -> int:
    root = scratch_root(resources)
    from dirobserver.config.settings import KNOWN_KEYS, ConfigError, load

    for kind in list(kinds):
        why = unavailable(kind, root)
        if why is not None:
            say(f"kind {kind.name} skipped: {why}")
            kinds.remove(kind)

    sentinel = args.redis == "sentinel" or (args.redis == "auto" and "redis_sentinels" in KNOWN_KEYS)
    redis = (SentinelSet if sentinel else Single)(resources, root / "redis")
    sections = []
    for i, kind in enumerate(kinds):
        directory = root / "in" / kind.name
        directory.mkdir(parents=True)
        sections.append(Section(i, kind.name, kind, directory, f"soak:{kind.name}"))
    config = ObserverConfig(root / "observer.ini", redis.config_lines(KNOWN_KEYS), sections, known=KNOWN_KEYS)
    config.write()
    try:
        load(str(config.path))
    except ConfigError as e:
        say(f"the soak's configuration is not accepted: {e}")
        return 2
    ledger = Ledger(sections)
    daemon = Daemon(resources, config.path, root, [])
    say(f"observer ready in {daemon.start():.2f} s; Redis: {', '.join(redis.config_lines(KNOWN_KEYS))}; "
        f"files under {root / 'in'}")
    # One section (at most) is consumed by a real dirobserver-worker.
    worked = next((s for s in sections if s.kind.worker), None)
    worker = Worker(resources, config.path, root, worked) if worked is not None else None
    if worker is not None:
        say(f"worker of [{worker.section.name}] ready in {worker.start():.2f} s")
    rng = random.Random(seed)
    halt_producers, halt_faults, release = threading.Event(), threading.Event(), threading.Event()
    producers = [Producer(s, ledger, rng.randrange(2**32), args.rate, halt_producers) for s in sections]
    consumers: list[Consumer | Watch] = [
        Watch(s, ledger, worker) if worker is not None and s is worked
        else Consumer(s, ledger, redis.where, rng.randrange(2**32)) for s in sections]
    watch = next((c for c in consumers if isinstance(c, Watch)), None)
    t0 = time.time()
    timeline = Timeline(t0, say)
    soak = Soak(redis, daemon, config, ledger, sections, producers, timeline, queued_events(), worker)
    lanes = [Lane(PROCESS, soak, rng.randrange(2**32), args.fault_gap, halt_faults, release, args.only),
             Lane(DIRECTORY, soak, rng.randrange(2**32), args.fault_gap * 2, halt_faults, release, args.only)]
    record_watch = RecordWatch(sections, ledger, redis.master_client)
    for thread in consumers + producers + lanes + [record_watch]:
        thread.start()

    problems: list[str] = []
    max_rss = 0.0
    next_progress = t0 + args.progress
    until = t0 + args.minutes * 60
    while time.time() < until:
        time.sleep(0.5)
        max_rss = max(max_rss, daemon.rss_mb())
        status = daemon.exited()
        if status is not None:
            problems.append(f"the observer exited by itself with status {status} at {time.time() - t0:.1f} s")
            say(problems[-1] + "; restarting it")
            if not _restart(daemon, problems):
                break
        status = worker.exited() if worker is not None else None
        if worker is not None and status is not None:
            problems.append(f"the worker exited by itself with status {status} at {time.time() - t0:.1f} s")
            say(problems[-1] + "; restarting it")
            if not _restart(worker, problems):
                break
        if any(t.failed is not None for t in producers + consumers):
            say("a producer or a consumer failed: ending the run")
            break
        if time.time() >= next_progress:
            next_progress += args.progress
            report.progress(t0, producers, consumers, timeline, daemon, max_rss)

    say("stopping the faults and the producers")
    halt_faults.set()
    for lane in lanes:
        lane.done.wait()
        problems += lane.problems
    halt_producers.set()
    for producer in producers:
        producer.join()
    stopped = time.time()
    # What is still due arrives now, or never.  Every file still present
    # gets a full grace period after the last fault window and its
    # recovery, so it is due at the check.
    grace = max(k.grace() for k in kinds)
    settled = max([w.end for w in ledger.windows] + [stopped]) + RECOVERY + grace + 0.5
    deadline = max(settled, stopped + max(60.0, 3 * grace))
    waiting = ledger.waiting()
    while (waiting or time.time() < settled) and time.time() < deadline:
        time.sleep(1.0)
        max_rss = max(max_rss, daemon.rss_mb())
        waiting = ledger.waiting(waiting)
    end = time.time()
    say(f"{len(waiting)} files still waiting {end - stopped:.1f} s after the producers stopped; SIGTERM")
    exit_status: int | None = None
    if daemon.proc.poll() is not None:
        problems.append("the observer was not running at the end")
    else:
        daemon.signal(signal.SIGTERM)
        try:
            exit_status = daemon.proc.wait(60)
        except Exception:
            problems.append("the observer did not exit within 60 s of SIGTERM")
    worker_status: int | None = None
    if worker is not None:
        # After the observer: no new event; running commands finish.
        if worker.exited() is not None:
            problems.append("the worker was not running at the end")
        else:
            worker_status = worker.stop()
            if worker_status != 0:
                problems.append(f"the worker's exit status on SIGTERM was {worker_status}")
    for consumer in consumers:
        consumer.finish()
    for consumer in consumers:
        consumer.join(60)
    record_watch.stop()
    record_watch.join(60)
    release.set()
    problems += [f"{t.name} failed: {type(t.failed).__name__}: {t.failed}"
                 for t in producers + consumers + [record_watch] if t.failed is not None]
    found = ledger.check(end)
    events = sum(c.events for c in consumers)
    files = found.files
    once = [judge(ledger, s.index, found.section_files[s.index], redis.sentinel) for s in sections if s.kind.once]
    result = {
        "seed": seed,
        "minutes": args.minutes,
        "files": files,
        "faults": len(timeline.faults),
        "unannounced": len(found.unannounced),
        "announced_early": len(found.early),
        "duplicates": events - found.received - len(ledger.unexpected),
        "max_rss_mb": round(max_rss, 1),
        "tracebacks": daemon.count(TRACEBACK),
        "due": found.due,
        "lost_by_redis": found.lost_by_redis,
        "events": events,
        "unexpected_names": len(ledger.unexpected),
        "overflows": daemon.count(OVERFLOWED),
        "observer_starts": daemon.starts,
        "exit_status": exit_status,
        "files_per_second": round(files / (stopped - t0), 1),
        "cpu_s": report.cpu(),
        "kinds": [k.name for k in kinds],
        "worker": None,
        "redis": "sentinel" if redis.sentinel else "single",
        "sections": report.section_figures(sections, consumers, found, ledger),
        "once": {o.section: o.summary() for o in once},
        "record_readings": record_watch.readings,
        "history_cuts": len(ledger.cuts),
    }
    if exit_status not in (0, None):
        problems.append(f"the observer's exit status on SIGTERM was {exit_status}")
    if max_rss > args.max_rss:
        problems.append(f"the observer's RSS reached {max_rss:.0f} MiB (bound {args.max_rss:g})")
    if watch is not None and worker is not None:
        result["worker"] = report.worker_findings(watch, worker, worker_status, problems)
    report.once_findings(once, ledger, record_watch.readings, problems)
    failed = bool(problems or found.unannounced or found.early or ledger.unexpected or result["tracebacks"])
    say(f"{files} files ({result['files_per_second']}/s), {found.due} due, {found.received} received, "
        f"{found.lost_by_redis} announced but lost by Redis and gone before the insurance listing, "
        f"{events} events, {result['faults']} faults, max RSS {max_rss:.0f} MiB, exit status {exit_status}")
    if failed or args.artifacts:
        out = report.keep(args.artifacts or Path(f"/tmp/dirobserver-soak-{seed}"), replay, t0, end, ledger,
                          found, timeline, daemon, problems, result, once)
    if failed:
        report.failure(seed, replay, t0, end, ledger, found, timeline, problems, once)
        print(f"  the observer's log and the details: {out}", flush=True)
    else:
        say("PASSED: every due file was announced")
    print(json.dumps(result), flush=True)
    return 1 if failed else 0


def _restart(daemon: Daemon | Worker, problems: list[str]) -> bool:
    """Start the observer (or the worker) again after it exited on its own; False if it will not start."""
    what = "the worker" if isinstance(daemon, Worker) else "the observer"
    for _ in range(3):
        try:
            daemon.start()
            return True
        except RuntimeError as e:
            problems.append(f"{what} did not start again: {str(e).splitlines()[-1]}")
            say(problems[-1])
            time.sleep(2)
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
