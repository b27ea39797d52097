"""
The soak's checker (L{soak.checker}) on hand-made histories: which
files were due, which were announced early, which names should never have
been announced; and a queue past its C{poll_queue_limit} (with a real
Redis) as a window.  The soak itself runs in test_soak.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from soak.checker import RECOVERY
from soak.kinds import KINDS, Section, available_kinds
from soak.ledger import Ledger

KIND = {kind.name: kind for kind in KINDS}
T0 = 1_000_000.0


def ledger(*kinds: str) -> Ledger:
    return Ledger([Section(i, name, KIND[name], Path(f"/nowhere/{name}"), f"q:{name}")
                   for i, name in enumerate(kinds)])


def made(book: Ledger, section: int, at: float, style: str = "quick", ready: float | None = None) -> int:
    i = book.new(section, style)
    book.completed(i, T0 + (at if ready is None else ready), T0 + at)
    return i


def test_a_file_present_past_the_grace_and_never_received_is_unannounced() -> None:
    book = ledger("created")
    due = made(book, 0, 1.0)
    received = made(book, 0, 1.0)
    assert book.receive(0, book.name(received), T0 + 1.1, T0 + 1.2) == received
    found = book.check(T0 + 60)
    assert found.unannounced == [due]
    assert found.due == 2 and found.files == 2 and found.received == 1


def test_a_file_deleted_by_a_consumer_after_it_was_received_stays_due_and_satisfied() -> None:
    book = ledger("created")
    i = made(book, 0, 1.0)
    book.receive(0, book.name(i), T0 + 1.0, T0 + 1.1)
    book.removed(i, T0 + 1.2, consumed=True)
    found = book.check(T0 + 60)
    assert found.due == 1 and found.unannounced == []


def test_files_gone_before_the_grace_or_never_complete_are_not_due() -> None:
    book = ledger("created")
    short = made(book, 0, 1.0)
    book.removed(short, T0 + 1.0 + KIND["created"].grace() - 0.5)
    abandoned = book.new(0, "abandoned")
    book.removed(abandoned, T0 + 2.0)
    book.completed(abandoned, T0 + 2.1, None)
    swept = made(book, 0, 3.0)
    assert book.swept(0, T0 + 4.0) == 1
    found = book.check(T0 + 60)
    assert found.due == 0 and found.unannounced == [] and found.files == 2
    assert book.gone[swept] == T0 + 4.0


def test_fault_windows_and_their_recovery_do_not_count_towards_the_grace() -> None:
    book = ledger("created", "poll")
    grace = KIND["created"].grace()
    # Present from 10 to 10 + grace + 1, but a window of its section covers
    # 11..12: the stretches are 1 s and grace + 1 - 2 - RECOVERY, too short.
    covered = made(book, 0, 10.0)
    book.removed(covered, T0 + 10.0 + grace + 1)
    book.window(T0 + 11.0, T0 + 12.0, 0, "dir_rename")
    # The same in the other section, which that window does not concern.
    elsewhere = made(book, 1, 10.0)
    book.removed(elsewhere, T0 + 10.0 + grace + 1)
    assert book.check(T0 + 60).unannounced == [elsewhere]
    # A window of the whole daemon concerns every section.
    book.window(T0 + 11.0, T0 + 11.5, None, "redis_kill")
    assert book.check(T0 + 60).unannounced == []
    # After a window and its recovery, a full grace is enough again.
    late = made(book, 0, 12.0 + RECOVERY - 0.5)
    book.removed(late, T0 + 12.0 + RECOVERY + grace + 0.1)
    assert book.check(T0 + 60).unannounced == [late]


def test_longest_stretch_skips_merged_windows() -> None:
    starts, ends = [2.0, 6.0], [3.0, 7.0]
    assert Ledger.longest_stretch(0.0, 10.0, starts, ends, 100) == 3.0
    assert Ledger.longest_stretch(2.5, 5.0, starts, ends, 100) == 2.0
    assert Ledger.longest_stretch(6.5, 6.9, starts, ends, 100) == 0.0


def test_closed_kinds_flag_events_before_the_file_was_complete() -> None:
    book = ledger("closed", "settle", "created")
    early = made(book, 0, 5.0, "slow", ready=4.9)
    on_time = made(book, 0, 5.0, "slow", ready=4.9)
    listed = made(book, 0, 5.0, "slow", ready=4.9)
    book.receive(0, book.name(early), T0 + 4.0, T0 + 5.2)  # stamped before the close began
    book.receive(0, book.name(on_time), T0 + 4.95, T0 + 5.0)
    # With settle = 0 a listing cannot see a close (documented): only live
    # events count.
    book.receive(0, book.name(listed), T0 + 4.0, T0 + 4.1, "exists")
    book.receive(0, book.name(listed), T0 + 5.0, T0 + 5.1, "created")
    unsettled = made(book, 1, 5.0, "slow", ready=5.0)
    settled = made(book, 1, 5.0, "slow", ready=5.0)
    listed_early = made(book, 1, 5.0, "slow", ready=5.0)
    book.receive(1, book.name(unsettled), T0 + 5.5, T0 + 5.6)
    book.receive(1, book.name(settled), T0 + 6.0, T0 + 6.1)
    book.receive(1, book.name(listed_early), T0 + 5.5, T0 + 5.6, "exists")  # with a settle, listings count
    paused = book.new(1, "slow")
    book.completed(paused, T0 + 5.0, T0 + 5.0, pause=KIND["settle"].settle())
    book.receive(1, book.name(paused), T0 + 4.5, T0 + 4.6, "exists")  # its writer let it settle
    created = made(book, 2, 5.0, "slow", ready=5.0)
    book.receive(2, book.name(created), T0 + 1.0, T0 + 1.1)  # created mode: no such rule
    assert book.check(T0 + 60).early == [early, unsettled, listed_early]


def test_names_that_must_never_be_announced_are_counted() -> None:
    book = ledger("created", "filters")
    staged = made(book, 0, 1.0, "staged")
    ignored = made(book, 1, 1.0, "ignored")
    hidden = made(book, 1, 1.0, "staged")
    assert book.receive(0, book.staging_name(staged), T0, T0) is None
    assert book.receive(1, book.name(ignored), T0, T0) is None
    assert book.receive(1, book.staging_name(hidden), T0, T0) is None
    assert book.staging_name(hidden).startswith(".")
    assert book.receive(1, book.name(staged), T0, T0) is None  # the other section's file
    assert book.receive(0, "unrelated.txt", T0, T0) is None
    reasons = [why for _t, _s, _n, why in book.unexpected]
    assert reasons == ["not the file's final name", "its section's filters refuse it",
                       "not the file's final name", "a file of [created]", "not a file of the soak"]
    assert book.check(T0 + 60).unannounced == [staged, hidden]


def test_odd_names_survive_the_json_of_an_event() -> None:
    book = ledger("created")
    i = made(book, 0, 1.0, "odd")
    name = book.name(i)
    assert "\n" in name and "\udcff" in name
    event = json.loads(json.dumps({"filename": name}))
    assert book.receive(0, event["filename"], T0, T0) == i
    assert book.receive(0, event["filename"], T0, T0) is None  # a duplicate


def test_kinds_follow_the_keys_the_observer_knows() -> None:
    today = [k.name for k in available_kinds(("forced_poll", "poll_queue_limit", "counter"))]
    assert today == ["created", "poll", "filters", "counter"]
    later = [k.name for k in available_kinds(("announce", "settle", "queue_type"))]
    assert later == ["created", "poll", "filters", "counter", "closed", "settle", "stream", "worker"]
    assert KIND["settle"].grace() == KIND["created"].grace() + 1


def test_a_deleted_sub_directory_sweeps_its_files_only() -> None:
    book = ledger("tree")
    inside = book.new(0, "nested", "n000000000")
    beside = book.new(0, "nested", "n000000001")
    top = book.new(0, "quick")
    assert book.relative(inside) == "n000000000/" + book.name(inside)
    assert book.swept(0, T0 + 5, "n000000000") == 1
    assert book.gone[inside] == T0 + 5 and book.gone[beside] == book.gone[top] == float("inf")
    assert book.present(0) == 2


def test_a_file_redis_lost_is_due_again_only_for_its_presence_after_the_loss() -> None:
    book = ledger("created")
    grace = KIND["created"].grace()
    # Both announced, in the queue when Redis was killed at 20 s (down 1 s).
    gone_soon = made(book, 0, 1.0)
    stays = made(book, 0, 1.0)
    never_read = made(book, 0, 1.0)  # not in the queue: the observer's miss
    assert book.lost_with_redis([(0, book.name(gone_soon)), (0, book.name(stays)), (0, "f999999999"),
                                 (0, "other")], T0 + 20.0) == 2
    book.window(T0 + 20.0, T0 + 21.0, None, "redis_kill")
    book.removed(gone_soon, T0 + 21.0 + RECOVERY + grace - 0.5)
    book.removed(never_read, T0 + 21.0 + RECOVERY + grace - 0.5)
    found = book.check(T0 + 60)
    assert found.lost_by_redis == 1
    assert sorted(found.unannounced) == sorted([stays, never_read])
    assert found.due == 2


def test_the_worker_section_counts_a_file_filed_in_done_as_received_and_one_run_unfiled_as_lost(
        tmp_path: Path) -> None:
    from soak.working import Watch, Worker

    incoming = tmp_path / "in"
    incoming.mkdir()
    section = Section(0, "worker", KIND["worker"], incoming, "q:worker")
    book = Ledger([section])
    filed, failed, lost, claimed = (made(book, 0, 1.0) for _ in range(4))
    worker = Worker(None, tmp_path / "observer.ini", tmp_path, section)  # type: ignore[arg-type]
    worker.done.mkdir()
    worker.failed.mkdir()
    (worker.done / book.name(filed)).write_text("x")
    (worker.failed / book.name(failed)).write_text("x")
    (incoming / f".{book.name(claimed)}.w1.working").mkdir()
    # Each run recorded, the filed one twice (a take-over), the last line not finished yet.
    worker.runs.write_text("".join(f"{book.name(i)}\n" for i in (filed, filed, failed, lost)) + "f0")
    watch = Watch(section, book, worker)
    found = watch.findings()
    assert found["run"] == 3 and found["runs"] == 4
    assert found["filed"] == 1 and found["failed"] == 1 and found["lost"] == 1
    assert found["filed_not_run"] == 0 and found["left_claimed"] == 1
    # done/ is emptied as a next stage would; the file filed counts as received.
    assert list(worker.done.iterdir()) == []
    assert book.check(T0 + 60).unannounced == [failed, lost, claimed]


def test_a_sub_directory_renamed_within_the_tree_takes_its_files_along_at_any_depth() -> None:
    book = ledger("fanotify")
    deep = book.new(0, "moved", "w000000000/a/b")
    top = book.new(0, "moved", "w000000000")
    other = book.new(0, "nested", "w0000000001/a")  # a name that only begins like it
    assert book.moved(0, "w000000000", "n000000000") == 2
    assert book.relative(deep) == "n000000000/a/b/" + book.name(deep)
    assert book.relative(top) == "n000000000/" + book.name(top)
    assert book.relative(other) == "w0000000001/a/" + book.name(other)
    # A deleted sub-directory sweeps what is below it too.
    assert book.swept(0, T0 + 5, "n000000000") == 2
    assert book.gone[deep] == book.gone[top] == T0 + 5 and book.gone[other] == float("inf")


@pytest.mark.process
def test_a_queue_past_its_poll_queue_limit_is_a_window_of_its_section_until_it_has_room(
        redis_client: Any) -> None:
    from soak.backlog import CATCH_UP, Backlog

    kind = replace(KIND["created"], keys={"poll_queue_limit": "2"})
    book = Ledger([Section(0, "small", kind, Path("/nowhere/small"), "q:small")])
    backlog = Backlog(book.sections[0], book)

    def sample() -> None:
        backlog._last = 0.0  # look now, whatever the pace
        backlog.sample(redis_client)

    sample()
    redis_client.lpush("q:small", "a")
    sample()
    assert book.windows == []  # below the limit
    redis_client.lpush("q:small", "b")
    sample()
    sample()
    assert book.windows == []  # past it: the window is open
    redis_client.delete("q:small")
    before = time.time()
    sample()
    [window] = book.windows
    assert (window.section, window.why) == (0, "queue_backlog")
    assert window.start <= before <= window.end - CATCH_UP
    assert backlog.windows == 1
    backlog.close(time.time())  # nothing open: nothing more
    assert len(book.windows) == 1


@pytest.mark.process
def test_an_event_taken_by_brpop_is_received_when_the_connection_fails_before_the_rpop(
        redis_server: Any) -> None:
    """
    The consumer takes a list's first event with BRPOP and the rest with
    RPOP.  A master paused and killed between the two (the soak's Redis
    kill) used to cost the event BRPOP took: Redis had popped it, and the
    consumer dropped it with the failed RPOP (two files of the once
    section were never received in a 30-minute soak).
    """
    from soak.consumer import Consumer

    book = ledger("created")
    files = [book.new(0, "quick") for _ in range(3)]
    client = redis_server.client()
    try:
        for i in files:
            client.lpush("q:created", json.dumps({"directory": "/nowhere/created", "filename": book.name(i),
                                                  "event": "created", "event_timestamp": T0}))
    finally:
        client.close()

    class KilledBeforeTheRpop(Consumer):
        def _connect(self) -> Any:
            real = super()._connect()
            if redis_server.is_running():
                rpop = real.rpop

                def rpop_after_the_kill(*args: Any, **kwargs: Any) -> Any:
                    redis_server.kill()
                    return rpop(*args, **kwargs)

                real.rpop = rpop_after_the_kill
            return real

    consumer = KilledBeforeTheRpop(book.sections[0], book, lambda: ("127.0.0.1", redis_server.port), seed=1)
    consumer.start()
    try:
        deadline = time.monotonic() + 10
        while consumer.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the polling interval
        assert consumer.errors >= 1, "the RPOP did not fail"
        # The first event pushed is the one BRPOP took (the list's right end).
        assert book.received[files[0]] == book.received[files[0]], "the event BRPOP took was dropped"
        assert consumer.files == 1
    finally:
        redis_server.restart()
        consumer.finish()
        consumer.join(15)
    assert not consumer.is_alive()
    assert consumer.failed is None
