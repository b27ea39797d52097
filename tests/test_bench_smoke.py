"""
Smoke test of the benchmark: ``python -m bench --quick`` runs every workload
end to end (its own valkey-server, real twistd observers, a creating child)
and writes numeric figures; the bursts (names announced as they appear, and
complete files announced at their close), the trees (listed at start, and
burst into new sub-directories) and the polled directory announce every
file, each event naming the directory that holds its file.
"""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("burst", "burst-closed", "paced-1k", "paced-20k", "paced-closed", "listing", "dirs",
             "tree-listing", "tree-burst", "poll-cost")


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--quiet", "--json", str(out)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=180,
    )
    output = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, output
    data = json.loads(out.read_text())
    workloads = data["workloads"]
    assert set(WORKLOADS) <= set(workloads), output
    for name in WORKLOADS:
        result = workloads[name]
        assert "error" not in result, (name, result.get("error"), output)
        assert result["figures"], (name, output)
        for key, figure in result["figures"].items():
            value = figure["value"]
            assert isinstance(value, numbers.Real) and value == value, (name, key, value)
    assert workloads["burst"]["figures"]["missing"]["value"] == 0, output
    assert workloads["burst-closed"]["figures"]["missing"]["value"] == 0, output
    assert workloads["paced-closed"]["figures"]["missing"]["value"] == 0, output
    for name in ("tree-listing", "tree-burst", "poll-cost"):
        assert workloads[name]["figures"]["missing"]["value"] == 0, (name, output)
    for name in ("tree-listing", "tree-burst"):
        assert workloads[name]["figures"]["misplaced"]["value"] == 0, (name, output)
    assert "machine:" in output
