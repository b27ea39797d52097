"""
The one-minute chaos soak (``python -m soak --minutes 1``): the real
daemon, a real Redis, every mode the observer has, producers, consumers and
random faults; every file that was due must have been announced, none early,
no traceback, exit status 0 on the final SIGTERM.

The seed is random and printed (so CI explores), unless
C{DIROBSERVER_SOAK_SEED} fixes it; a failure shows the replay command.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.exclusive  # both cores for a minute: nothing timing-sensitive beside it
def test_soak_one_minute(tmp_path: Path) -> None:
    seed = int(os.environ.get("DIROBSERVER_SOAK_SEED") or random.randrange(1, 10**6))
    proc = subprocess.run(
        [sys.executable, "-m", "soak", "--minutes", "1", "--seed", str(seed), "--progress", "30",
         "--artifacts", str(tmp_path / "soak")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=270,
    )
    output = proc.stdout.decode(errors="replace")
    print(output)  # pytest shows it when the test fails
    result = json.loads(output.strip().splitlines()[-1])
    assert result["seed"] == seed
    assert proc.returncode == 0, f"soak failed; replay with --seed {seed}"
    for key in ("unannounced", "announced_early", "tracebacks", "unexpected_names"):
        assert result[key] == 0, (key, seed)
    assert result["exit_status"] == 0
    # It really ran: files went through and faults happened.
    assert result["files"] > 5000 and result["due"] > 1000, result
    assert result["faults"] >= 3, result
