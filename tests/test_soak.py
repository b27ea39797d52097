"""
The one-minute chaos soak (``python -m soak --minutes 1``): the real
daemon, a real Redis, every mode the observer has, producers, consumers and
random faults; every file that was due must have been announced, none early,
no traceback, exit status 0 on the final SIGTERM.

The seed is random and printed (so CI explores), unless
C{DIROBSERVER_SOAK_SEED} fixes it; a failure shows the replay command.

Also the judge of the C{announce_once} section's duplicates (L{soak.once}),
on a hand-made ledger (no process).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from soak.kinds import KINDS, Section
from soak.ledger import Ledger
from soak.once import EXPLAIN_WITHIN, NEW_SLACK, judge

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.process
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


# -- the announce_once section's duplicates, on a hand-made ledger -------------------------

T0 = 1_000_000.0
ONCE = next(kind for kind in KINDS if kind.once)


def once_ledger(files: int) -> tuple[Ledger, list[int]]:
    """A ledger of one announce-once section whose C{files} files were completed at 1 s and received at 2 s."""
    book = Ledger([Section(0, "once", ONCE, Path("/nowhere/once"), "q:once")])
    ids = []
    for _ in range(files):
        i = book.new(0, "quick")
        book.completed(i, T0 + 1.0, T0 + 1.0)
        assert book.receive(0, book.name(i), T0 + 1.5, T0 + 2.0) == i
        ids.append(i)
    return book, ids


def again(book: Ledger, i: int, at: float, event: str = "exists") -> None:
    assert book.receive(0, book.name(i), T0 + at, T0 + at, event) is None


def test_once_unexplained_duplicates_pass_within_the_allowance_and_fail_beyond_it() -> None:
    book, ids = once_ledger(3000)  # an allowance of 3
    for i in ids[:3]:
        again(book, i, 100.0)  # no fault, no loss: unexplained
    found = judge(book, 0, 3000)
    assert (found.duplicates, len(found.unexplained), found.allowance) == (3, 3, 3)
    assert found.passed and found.listed == 3
    again(book, ids[3], 100.0, "created")
    found = judge(book, 0, 3000)
    assert len(found.unexplained) == 4 and not found.passed
    assert found.summary()["passed"] is False and found.summary()["unexplained"] == 4


def test_once_duplicates_redis_lost_are_explained_one_per_loss_and_not_long_after() -> None:
    book, ids = once_ledger(1000)  # an allowance of 1
    lost, late, twice = ids[:3]
    assert book.once_lost([(0, book.name(lost)), (0, book.name(late)), (0, book.name(twice)),
                           (0, "f999999999")], T0 + 50.0) == 3
    again(book, lost, 52.0)
    again(book, late, 50.0 + EXPLAIN_WITHIN + 1)  # long after its loss: not its doing
    again(book, twice, 52.0)
    again(book, twice, 53.0)  # one loss explains one duplicate
    found = judge(book, 0, 1000)
    assert found.redis_lost == 2 and found.after_fault == 0
    assert [(i, t - T0) for i, t, _ in found.unexplained] == [(late, 50.0 + EXPLAIN_WITHIN + 1), (twice, 53.0)]
    assert not found.passed


def test_once_duplicates_after_a_listing_fault_are_explained_for_new_files_only() -> None:
    book, ids = once_ledger(1000)
    # A file new at the fault (complete 5 s before it began), and one present long before it.
    new = book.new(0, "quick")
    book.completed(new, T0 + 195.0, T0 + 195.0)
    book.receive(0, book.name(new), T0 + 195.5, T0 + 196.0)
    book.window(T0 + 200.0, T0 + 202.0, None, "observer_kill")
    book.window(T0 + 200.0, T0 + 202.0, 0, "reload_invalid")  # a refused reload lists nothing
    again(book, new, 203.0)
    again(book, ids[0], 203.0)  # complete at 1 s: not new then, announce_once must not repeat it
    found = judge(book, 0, 1001)
    assert found.after_fault == 1 and [i for i, _, _ in found.unexplained] == [ids[0]]
    assert found.by_fault == {"observer_kill": 1}
    assert found.passed  # one unexplained: within the allowance of 1
    # Too long after the fault ended, or a file older than the slack: unexplained.
    again(book, new, 202.0 + EXPLAIN_WITHIN + 0.5)
    old = book.new(0, "quick")
    book.completed(old, T0 + 200.0 - NEW_SLACK - 1, T0 + 200.0 - NEW_SLACK - 1)
    book.receive(0, book.name(old), T0 + 190.0, T0 + 190.0)
    again(book, old, 201.0)
    # A file made well after the fault's listing, announced twice within the minute: unexplained.
    later = book.new(0, "quick")
    book.completed(later, T0 + 202.0 + NEW_SLACK + 1, T0 + 202.0 + NEW_SLACK + 1)
    book.receive(0, book.name(later), T0 + 214.0, T0 + 214.0)
    again(book, later, 220.0)
    found = judge(book, 0, 1003)
    assert found.after_fault == 1 and len(found.unexplained) == 4 and not found.passed
