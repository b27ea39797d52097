"""
The soak's reading of what Redis lost of the records (L{soak.record_watch}),
against real servers: a replica promoted carries on its master's history
and explains nothing; a master with another history explains the
duplicates of what it lacks (L{soak.once.judge}).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from soak.kinds import KINDS, Section
from soak.ledger import Ledger
from soak.once import EXPLAIN_WITHIN, judge
from soak.record_watch import RecordWatch

ONCE = next(kind for kind in KINDS if kind.once)
SECTION = Section(0, "once", ONCE, Path("/nowhere/once"), "q:once")


def announced(book: Ledger, at: float) -> int:
    """A file of the once section, complete and received at C{at}."""
    i = book.new(0, "quick")
    book.completed(i, at, at)
    assert book.receive(0, book.name(i), at, at) == i
    return i


def wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.process
def test_a_promoted_replica_carries_on_and_another_history_loses_what_it_lacks(redis_server_factory: Any) -> None:
    book = Ledger([SECTION])
    now = time.time()
    kept, rewritten, lacked = (announced(book, now - 5.0) for _ in range(3))
    # A master with its replica (as in the soak's Sentinel set: a master
    # without one takes a new replication ID when the first one comes).
    first = redis_server_factory()
    second = redis_server_factory(extra_args=["--replicaof", "127.0.0.1", str(first.port)])
    client, replica = first.client(), second.client()
    wait_for(lambda: replica.info("replication").get("master_link_status") == "up", "the replica's link")
    client.hset(SECTION.record, mapping={book.name(i): b"1:%d:%r" % (i, now - 5.0) for i in (kept, rewritten, lacked)})
    master = [first]
    watch = RecordWatch([SECTION], book, lambda: master[0].client(socket_timeout=5))

    def read() -> None:
        reading = watch._read()
        assert reading is not None
        watch.compare(reading)

    read()
    # The replica, in sync, promoted: the same history, nothing lost.
    wait_for(lambda: replica.hlen(SECTION.record) == 3, "the replica's sync")
    master[0] = second
    assert watch._read() is None  # a replica, not a master yet
    replica.execute_command("REPLICAOF", "NO", "ONE")
    read()
    assert (watch.readings, watch.cuts, book.cuts, book.losses) == (2, 0, [], {})
    # A master of another history (a node promoted before it caught up,
    # here one started apart): one field it lacks, one written again.
    third = redis_server_factory()
    other = third.client()
    other.hset(SECTION.record, mapping={book.name(kept): b"1:%d:%r" % (kept, now - 5.0),
                                        book.name(rewritten): b"1:%d:%r" % (rewritten, now)})
    master[0] = third
    before = watch._last
    assert before is not None
    read()
    assert watch._last is not None
    assert watch.cuts == 1 and book.cuts == [(before.at, watch._last.at)]
    assert sorted(book.losses) == sorted([rewritten, lacked])
    assert book.losses[lacked] == [before.at]
    # What the losses explain: the duplicates of the two, not the kept one's.
    for i in (kept, rewritten, lacked):
        assert book.receive(0, book.name(i), before.at + 2, before.at + 2, "exists") is None
    found = judge(book, 0, 3, sentinel=True)
    assert found.redis_lost == 2 and [i for i, _, _ in found.unexplained] == [kept]
    for c in (client, replica, other):
        c.close()


def test_a_duplicate_of_a_file_first_received_between_the_readings_around_a_cut_is_explained() -> None:
    book = Ledger([SECTION])
    t = 1_000_000.0
    before_cut = announced(book, t - 1.0)  # in the earlier reading, were it lost
    within = announced(book, t + 0.5)
    late = announced(book, t + 0.6)
    book.history_cut(t, t + 2.0)
    book.receive(0, book.name(before_cut), t + 3, t + 3, "exists")
    book.receive(0, book.name(within), t + 3, t + 3, "exists")
    book.receive(0, book.name(late), t + 2.0 + EXPLAIN_WITHIN + 1, t + 2.0 + EXPLAIN_WITHIN + 1, "exists")
    found = judge(book, 0, 3, sentinel=True)
    assert found.redis_lost == 1
    assert sorted(i for i, _, _ in found.unexplained) == [before_cut, late]
    assert "history cut" in found.explained[0][3]
