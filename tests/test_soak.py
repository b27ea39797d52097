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
    return book, [made_once(book, 1.0, 2.0) for _ in range(files)]


def made_once(book: Ledger, complete: float, received: float) -> int:
    i = book.new(0, "quick")
    book.completed(i, T0 + complete, T0 + complete)
    assert book.receive(0, book.name(i), T0 + received - 0.5, T0 + received) == i
    return i


def again(book: Ledger, i: int, at: float, event: str = "exists") -> None:
    assert book.receive(0, book.name(i), T0 + at, T0 + at, event) is None


def test_once_unexplained_duplicates_pass_within_the_allowance_and_fail_beyond_it() -> None:
    book, ids = once_ledger(3000)  # an allowance of 3
    for i in ids[:3]:
        again(book, i, 100.0)  # no fault, no loss: unexplained
    found = judge(book, 0, 3000, sentinel=True)
    assert (found.duplicates, len(found.unexplained), found.allowance) == (3, 3, 3)
    assert found.passed and found.listed == 3
    again(book, ids[3], 100.0, "created")
    found = judge(book, 0, 3000, sentinel=True)
    assert len(found.unexplained) == 4 and not found.passed
    assert found.summary()["passed"] is False and found.summary()["unexplained"] == 4


def test_once_duplicates_of_losses_read_before_a_fault_are_explained_one_per_loss_and_not_long_after() -> None:
    book, ids = once_ledger(1000)  # an allowance of 1
    lost, late, twice = ids[:3]
    assert book.once_lost([(0, book.name(lost)), (0, book.name(late)), (0, book.name(twice)),
                           (0, "f999999999")], T0 + 50.0) == 3
    again(book, lost, 52.0)
    again(book, late, 50.0 + EXPLAIN_WITHIN + 1)  # long after its loss: not its doing
    again(book, twice, 52.0)
    again(book, twice, 53.0)  # one loss explains one duplicate
    found = judge(book, 0, 1000, sentinel=True)
    assert found.redis_lost == 2 and found.after_fault == 0
    assert [(i, t - T0) for i, t, _ in found.unexplained] == [(late, 50.0 + EXPLAIN_WITHIN + 1), (twice, 53.0)]
    assert not found.passed


def test_once_a_listing_announcing_again_after_a_fault_that_loses_writes_is_explained_if_written_near_it() -> None:
    book, ids = once_ledger(1000)
    recent = made_once(book, 195.0, 196.0)  # acknowledged 4 s before the failover
    book.window(T0 + 200.0, T0 + 202.0, None, "failover")
    again(book, recent, 204.0)
    again(book, ids[0], 204.0)  # acknowledged at 2 s: replicated long before
    found = judge(book, 0, 1001, sentinel=True)
    assert found.redis_lost == 1 and [i for i, _, _ in found.unexplained] == [ids[0]]
    # A SIGSTOP of a single server loses nothing (a Sentinel set fails it over).
    book, _ = once_ledger(1000)
    recent = made_once(book, 195.0, 196.0)
    book.window(T0 + 200.0, T0 + 202.0, None, "redis_stop")
    again(book, recent, 204.0)
    assert judge(book, 0, 1001, sentinel=True).redis_lost == 1
    assert judge(book, 0, 1001, sentinel=False).redis_lost == 0


def test_once_a_created_duplicate_of_a_new_file_after_a_listing_fault_is_explained_an_exists_one_is_not() -> None:
    book, ids = once_ledger(1000)
    new = made_once(book, 195.0, 196.0)
    listed = made_once(book, 195.0, 196.0)
    book.window(T0 + 200.0, T0 + 202.0, None, "observer_kill")
    book.window(T0 + 200.0, T0 + 202.0, 0, "reload_invalid")  # a refused reload lists nothing
    again(book, new, 203.0, "created")  # the kernel's event after the listing's
    again(book, listed, 203.0, "exists")  # a listing that did not see the record: no reason
    again(book, ids[0], 203.0, "created")  # complete at 1 s: not new at the fault
    found = judge(book, 0, 1002, sentinel=True)
    assert found.after_fault == 1 and found.by_fault == {"observer_kill": 1}
    assert sorted(i for i, _, _ in found.unexplained) == [ids[0], listed]
    assert not found.passed  # two unexplained, an allowance of one
    # Too long after the fault ended, or a file made well after its listing: unexplained.
    again(book, new, 202.0 + EXPLAIN_WITHIN + 0.5, "created")
    later = made_once(book, 202.0 + NEW_SLACK + 1, 214.0)
    again(book, later, 220.0, "created")
    found = judge(book, 0, 1003, sentinel=True)
    assert found.after_fault == 1 and len(found.unexplained) == 4
