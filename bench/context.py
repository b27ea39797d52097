"""
What every workload shares.  Each workload (L{bench.burst}, L{bench.paced},
L{bench.listing}, L{bench.idle}, L{bench.trees}, L{bench.workers},
L{bench.fanotify_tree}) has a C{*_run} function that does one run with a
fresh observer process and returns the run's figures as a dict of numbers
(plus a few details under keys starting with C{_}, kept in the JSON only);
this module gives them their L{Context}, the parsing of the events they
drain, the wait for an idle observer and the observer's own figures.

All times are C{time.time()} in this process and in the creator (the same
clock), so "created at" and "received at" compare directly.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kit import RedisServer, Resources, remove_tree

from .harness import (
    OVERFLOW_MARK,
    Observer,
    Profiler,
    write_config,
)

_NAME = re.compile(rb'"filename":\s*"([^"\\]*)"')
_EXISTS = re.compile(rb'"event":\s*"exists"')
_STAMP = re.compile(rb'"event_timestamp":\s*([-+0-9.eE]+)')


@dataclass
class Context:
    resources: Resources
    redis: RedisServer
    root: Path
    profile_dir: Path | None = None
    verbose: bool = True
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.redis.client(socket_timeout=60)
        return self._client

    def fresh(self, name: str) -> Path:
        """A new, empty directory under the scratch root."""
        path = self.root / name
        remove_tree(path)
        path.mkdir(parents=True)
        return path

    def observer(self, workdir: Path, sections: list[dict[str, str]], extra_args: Sequence[str] = ()) -> Observer:
        """A fresh observer of C{sections} (C{extra_args}: more options of the subcommand), Redis emptied."""
        config = workdir / "observer.ini"
        write_config(config, self.redis.port, sections)
        self.client.flushall()
        return Observer(self.resources, config, workdir, extra_args=extra_args)

    def profiler(self, observer: Observer, name: str, run: int) -> Profiler | None:
        if self.profile_dir is None or run != 0:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return Profiler(self.resources, observer.pid, self.profile_dir / f"{name}.txt")

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"    {text}", flush=True)


def parse_names(batch: list[bytes]) -> tuple[list[bytes], int]:
    """File names of a batch of events, and how many are "exists" events."""
    joined = b"\n".join(batch)
    names = _NAME.findall(joined)
    if len(names) == len(batch):
        return names, len(_EXISTS.findall(joined))
    # The format is not the one expected: decode each event properly.
    names, exists = [], 0
    for raw in batch:
        event = json.loads(raw)
        names.append(os.fsencode(event["filename"]))
        exists += event.get("event") == "exists"
    return names, exists


def parse_stamped(batch: list[bytes]) -> tuple[list[bytes], list[float]]:
    """File names and event timestamps of a batch of events."""
    joined = b"\n".join(batch)
    names = _NAME.findall(joined)
    stamps = _STAMP.findall(joined)
    if len(names) == len(batch) == len(stamps):
        return names, [float(s) for s in stamps]
    events = [json.loads(raw) for raw in batch]
    return [os.fsencode(e["filename"]) for e in events], [float(e["event_timestamp"]) for e in events]


def name_index(name: bytes, prefix: bytes, limit: int) -> int:
    """C{p00000012} -> 12; -1 for a name that is not one of ours."""
    if not name.startswith(prefix):
        return -1
    try:
        i = int(name[len(prefix):])
    except ValueError:
        return -1
    return i if 0 <= i < limit else -1


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def finish(observer: Observer, profiler: Profiler | None, cpu0: float, events: int) -> dict[str, float]:
    """The observer's CPU and memory figures, then stop it (and the profiler)."""
    cpu = observer.cpu() - cpu0
    rss = observer.peak_rss_mb()
    if profiler is not None:
        profiler.stop()
    overflows = observer.log_count(OVERFLOW_MARK)
    errors = observer.errors()
    observer.stop()
    return {
        "cpu_s": cpu,
        "cpu_per_100k": cpu / events * 100_000 if events else 0.0,
        "peak_rss_mb": rss,
        "overflows": float(overflows),
        "log_errors": float(errors),
    }


def wait_idle(observer: Observer, poll: Any, until: float, window: float = 0.5) -> None:
    """
    Keep calling C{poll()} (which drains and returns how many events it got)
    until the observer used almost no CPU and nothing arrived for C{window}
    seconds, or until C{until}.
    """
    mark_cpu, mark_time, got = observer.cpu(), time.time(), 0
    while time.time() < until:
        n = poll()
        got += n
        if not n:
            time.sleep(0.005)
        if time.time() - mark_time >= window:
            cpu = observer.cpu()
            if got == 0 and cpu - mark_cpu < 0.05 * window:
                return
            mark_cpu, mark_time, got = cpu, time.time(), 0


def flat_section(name: str, directory: Path, queue: str, closed: bool, once: bool = False) -> dict[str, str]:
    """A section of one directory, as L{bench.harness.write_config} takes it."""
    section = {"name": name, "directory": str(directory), "queue": queue}
    if closed:
        section["announce"] = "closed"
    if once:
        section["announce_once"] = "true"
    return section
