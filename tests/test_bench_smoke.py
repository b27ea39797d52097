"""
Smoke test of the benchmark: ``python -m bench --quick`` runs every workload
end to end (its own valkey-server, real twistd observers, a creating child)
and writes numeric figures; the bursts (names announced as they appear,
complete files announced at their close, and names announced once, each
with its one field in the record), the trees (listed at start, and
burst into new sub-directories) and the polled directory announce every
file, each event naming the directory that holds its file; the worker
runs (the observer and C{dirobserver-worker} running C{true}, one job and
four) file every file in done/, none twice; the big tree watched by fanotify
and by inotify (as root; skipped, with its reason, otherwise) announces every
file of its burst in both modes.  And
``python -m bench.floor``: a one-second run of its three minimal loops (the
reply read in a wake-up of its own, read lazily at the next one, and read
at the tick of a loop that gathers for a linger) pushes
every file created to Redis and reads the reply of every one.
"""

from __future__ import annotations

import json
import numbers
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("burst", "burst-closed", "burst-once", "paced-100", "paced-100-linger0", "paced-1k",
             "paced-1k-linger0", "paced-10k", "paced-10k-linger0", "paced-20k", "paced-20k-linger0",
             "paced-20k-once", "paced-closed", "listing", "dirs", "tree-listing", "tree-burst", "poll-cost",
             "idle")
#: fanotify's filesystem mark and the inotify limit need root
AS_ROOT = os.geteuid() == 0


def run_bench(module: str, *args: str, timeout: float) -> str:
    """Run C{python -m module args} at the repository root; its output, once it succeeded."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    output = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, output
    return output


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    output = run_bench("bench", "--quick", "--quiet", "--json", str(out), timeout=180)
    data = json.loads(out.read_text())
    workloads = data["workloads"]
    assert set(WORKLOADS) <= set(workloads), output
    if not AS_ROOT:
        assert "needs root" in workloads["fanotify-tree"]["skipped"], output
    for name in WORKLOADS + (("fanotify-tree",) if AS_ROOT else ()):
        result = workloads[name]
        assert "error" not in result, (name, result.get("error"), output)
        assert result["figures"], (name, output)
        for key, figure in result["figures"].items():
            value = figure["value"]
            assert isinstance(value, numbers.Real) and value == value, (name, key, value)
    assert workloads["burst"]["figures"]["missing"]["value"] == 0, output
    assert workloads["burst-closed"]["figures"]["missing"]["value"] == 0, output
    # announce_once: every file announced, and recorded once (20,000: --quick's burst).
    once = workloads["burst-once"]["figures"]
    assert once["missing"]["value"] == 0, output
    assert once["record_fields"]["value"] == 20_000, output
    assert once["record_bytes_per_file"]["value"] > 0, output
    assert workloads["paced-closed"]["figures"]["missing"]["value"] == 0, output
    for name in ("tree-listing", "tree-burst", "poll-cost"):
        assert workloads[name]["figures"]["missing"]["value"] == 0, (name, output)
    for name in ("tree-listing", "tree-burst"):
        assert workloads[name]["figures"]["misplaced"]["value"] == 0, (name, output)
    if AS_ROOT:
        fan = workloads["fanotify-tree"]["figures"]
        for mode in ("fanotify", "inotify"):
            assert fan[f"{mode}_missing"]["value"] == 0, (mode, output)
            assert fan[f"{mode}_misplaced"]["value"] == 0, (mode, output)
        assert "side by side" in output
    assert "machine:" in output


FLOOR_KINDS = ("epoll", "epoll-lazy", "epoll-linger")


def test_floor_minimal_loops_acknowledge_every_file() -> None:
    output = run_bench("bench.floor", "--only", ",".join(FLOOR_KINDS), "--rate", "500", "--seconds", "1",
                       "--runs", "1", timeout=120)
    assert "machine:" in output
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in FLOOR_KINDS:
            rows[cells[0]] = cells
    assert set(rows) == set(FLOOR_KINDS), output
    for kind, cells in rows.items():
        # The table's last columns: in Redis, replies read, files created.
        in_redis, acked, files = cells[-3:]
        assert files == "500", (kind, output)
        assert in_redis == acked == files, (kind, output)
