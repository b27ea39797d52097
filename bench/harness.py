"""
The benchmark's side of its processes and measurements: the machine it ran
on, the Redis and the observer of a run, the file-creating and the latency
children, py-spy, and an C{LLEN} sampler.

Processes, servers, the observer and the clean-up on exit are the testing
kit's (L{tests.kit}): every child gets its own session and a death signal,
and L{Resources.close} (in a C{finally} of L{bench.__main__}) ends and
removes all of them, also on Ctrl-C, SIGTERM and exceptions.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.kit import REPO_ROOT, LoggedObserver, RedisServer, Resources, code_under_test, ini_text, redis_at, spawn
from tests.kit.processes import cpu_seconds, peak_rss_mb, stop_process

OVERFLOW_MARK = b"inotify queue overflowed"


def redis_server(resources: Resources, workdir: Path) -> RedisServer:
    """A started valkey-server for a whole run (warnings only in its log), killed at close."""
    return resources.server(RedisServer(workdir=workdir, loglevel="warning")).start(timeout=15)


# -- the machine -----------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        twisted_version = version("twisted")
    except Exception:
        twisted_version = "unknown"
    limits = {}
    for name in ("max_queued_events", "max_user_watches", "max_user_instances"):
        try:
            limits[name] = int(Path(f"/proc/sys/fs/inotify/{name}").read_text())
        except (OSError, ValueError):
            pass
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": model,
        "python": platform.python_version(),
        "twisted": twisted_version,
        "inotify": limits,
        "loadavg_at_start": os.getloadavg()[0],
        "source": _source_state(),
    }


def _source_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the files changed since."""
    git = shutil.which("git")
    source = code_under_test()
    if source is not None:
        # Measured from elsewhere: name it; a git checkout also names its commit.
        state: dict[str, Any] = {"path": str(source)}
        if git and (source / ".git").exists():
            state["commit"] = subprocess.run([git, "-C", str(source), "rev-parse", "HEAD"],
                                             capture_output=True, text=True).stdout.strip()
        return state
    if not git:
        return {}
    try:
        head = subprocess.run([git, "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run([git, "-C", str(REPO_ROOT), "status", "--porcelain", "--", "dirobserver", "twisted"],
                                capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "changed": [line[3:] for line in status]}


# -- the observer ------------------------------------------------------------


def write_config(path: Path, port: int, sections: Iterable[dict[str, str]]) -> None:
    """
    The observer's INI file: C{[common]} with Redis and the bench settings,
    then one C{[name:common]} section per item of C{sections} (each a dict
    with C{name}, C{directory}, C{queue}, and optionally C{counter} and any
    other key, such as C{announce}).
    """
    common = redis_at(port, monitor_inactivitytimeout=300, poll_queue_limit=0, max_held_events=2000000)
    named = {s["name"]: {"active": "true", **{k: v for k, v in s.items() if k != "name" and (k != "counter" or v)}}
             for s in sections}
    path.write_text(ini_text(named, common))


class Observer(LoggedObserver):
    """The kit's observer with its log in a file, and what the benchmark reads of it in /proc."""

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)


# -- the creator ---------------------------------------------------------------


class Creator:
    """
    A L{bench.creator} child: ``python -m bench.creator MODE ...``.  It prints
    one JSON line (its figures) at the end; L{result} waits for it.
    """

    def __init__(self, resources: Resources, mode: str, *args: Any) -> None:
        cmd = [sys.executable, "-m", "bench.creator", mode] + [str(a) for a in args]
        self.proc = resources.process(spawn(cmd, stdout=subprocess.PIPE, cwd=str(REPO_ROOT)), sig=signal.SIGUSR1)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Ask a creator that runs until told to stop (the trickle) to stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def result(self, timeout: float = 600.0) -> dict[str, Any]:
        import json

        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the creator failed with {self.proc.returncode}: {out!r}")
        return json.loads(out.decode().strip().splitlines()[-1])


class LatencyConsumer:
    """A L{bench.consumer} child: receive times of one list, measured alone."""

    def __init__(self, resources: Resources, port: int, queue: str, out: Path) -> None:
        cmd = [sys.executable, "-m", "bench.consumer", str(port), queue, str(out)]
        self.out = out
        self.proc = resources.process(spawn(cmd, stdout=subprocess.PIPE, cwd=str(REPO_ROOT)), sig=signal.SIGUSR1)
        assert self.proc.stdout is not None  # a pipe, asked for above
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the latency consumer did not start: {line!r}")

    def stop(self) -> list[tuple[str, float, float]]:
        """Let it take what is left, and return [(filename, received_at, event_timestamp)]."""
        import json

        self.proc.send_signal(signal.SIGUSR1)
        self.proc.communicate(timeout=60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the latency consumer failed with {self.proc.returncode}")
        return [tuple(r) for r in json.loads(self.out.read_text())]


# -- py-spy ----------------------------------------------------------------------


class Profiler:
    """``py-spy record --format raw`` on the observer, stopped with SIGINT."""

    def __init__(self, resources: Resources, pid: int, out: Path, rate: int = 250) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(exe, os.X_OK):
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        self.out = out
        self._err = open(out.with_suffix(".log"), "wb")
        self.proc = resources.process(
            spawn(
                [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                 "--nonblocking", "--output", str(out)],
                stdout=self._err,
                stderr=subprocess.STDOUT,
            ),
            sig=signal.SIGINT,
        )
        self._err.close()

    def stop(self) -> None:
        stop_process(self.proc, grace=30.0, sig=signal.SIGINT)


class Sampler(threading.Thread):
    """Samples C{LLEN key} every C{interval} seconds on its own connection."""

    def __init__(self, client: Any, key: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self._client = client
        self._key = key
        self._interval = interval
        self._halt = threading.Event()
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                self.samples.append((time.time(), int(self._client.llen(self._key))))
            except Exception:
                return

    def stop(self) -> list[tuple[float, int]]:
        self._halt.set()
        self.join(5)
        return self.samples
