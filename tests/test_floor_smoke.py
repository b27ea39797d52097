"""
Smoke test of L{bench.floor}: a one-second run of the two minimal loops (the
reply read in a wake-up of its own, and read lazily at the next one) pushes
every file created to Redis and reads the reply of every one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = ("epoll", "epoll-lazy")


def test_floor_minimal_loops_acknowledge_every_file() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--only", ",".join(KINDS), "--rate", "500", "--seconds", "1",
         "--runs", "1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    output = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, output
    assert "machine:" in output
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in KINDS:
            rows[cells[0]] = cells
    assert set(rows) == set(KINDS), output
    for kind, cells in rows.items():
        # The table's last columns: in Redis, replies read, files created.
        in_redis, acked, files = cells[-3:]
        assert files == "500", (kind, output)
        assert in_redis == acked == files, (kind, output)
