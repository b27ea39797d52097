"""
announce_once end to end (issue 20): the real daemon (``twistd -n
dirobserver``) against a real valkey-server, with forced polls, restarts, a
kernel queue overflow, a paused Redis, a consumer that deletes what it took,
C{reannounce_after}, a file replaced while the observer was stopped, and a
record of the wrong type; every test for a list and for a stream.

Every test counts what arrived, name by name (a C{Counter}): every file
exactly once, unless the test is about announcing again.  "Nothing more
comes" is never proved by sleeping: once the listings that could announce a
file again are logged as done, one more file (the I{marker}) is created,
and since the writer delivers one queue's events in order, the marker's
arrival means everything pushed before it arrived too.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Observer, RedisServer, free_port, redis_at, section, wait_until, write_config
from tests.test_e2e_fanotify import inotify_watches
from tests.test_e2e_faults import held_events, lines_with, make_files

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

#: The queue, and the record announce_once keeps beside it.
QUEUE = "q"
RECORD = "q:announced"


@pytest.fixture(params=["list", "stream"])
def queue_type(request: pytest.FixtureRequest) -> str:
    """Each test runs for a list and for a stream."""
    return str(request.param)


class Taken:
    """
    What a consumer took from the queue, in either shape: a list is emptied
    (C{RPOP}, as a worker takes events), a stream is read on from the last
    entry seen (C{XRANGE}); each event as a dict of text.
    """

    def __init__(self, server: RedisServer, queue_type: str) -> None:
        self.client = server.client(socket_timeout=5)
        self.queue_type = queue_type
        self.events: list[dict[str, Any]] = []
        self._last = b"-"

    def take(self) -> list[dict[str, Any]]:
        """Take what the queue holds now; the new events."""
        if self.queue_type == "list":
            raw = self.client.rpop(QUEUE, 5000) or []
            new = [json.loads(item) for item in raw]
        else:
            start = self._last if self._last == b"-" else b"(" + self._last
            entries = self.client.xrange(QUEUE, start, "+", count=5000)
            if entries:
                self._last = entries[-1][0]
            new = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        self.events.extend(new)
        return new

    def counts(self) -> Counter[str]:
        """How many events each file name got."""
        return Counter(event["filename"] for event in self.events)

    def until(self, names: set[str], timeout: float = 20.0) -> Counter[str]:
        """Take until every name of C{names} arrived (or C{timeout}); the counts."""
        wait_until(lambda: (self.take(), names <= set(self.counts()))[1], timeout, interval=0.02)
        return self.counts()

    def of(self, name: str) -> list[dict[str, Any]]:
        """The events of one file, in the order they came."""
        return [event for event in self.events if event["filename"] == name]


@pytest.fixture
def taken(redis_server: RedisServer, queue_type: str) -> Iterator[Taken]:
    taker = Taken(redis_server, queue_type)
    try:
        yield taker
    finally:
        taker.client.close()


def config(tmp_path: Path, directory: Path, port: int, queue_type: str,
           common: dict[str, Any] | None = None, **keys: Any) -> Path:
    """A section with announce_once watching C{directory}, Redis on C{port}."""
    values = section(directory, QUEUE, announce_once="true", queue_type=queue_type, **keys)
    return write_config(tmp_path, {"s": values}, redis_at(port, **(common or {})))


def listed(observer: Observer, directory: Path, times: int, since: int, timeout: float = 20.0) -> None:
    """Wait until C{directory} was listed C{times} times after line C{since}."""
    mark = f"Listed {directory}:"
    wait_until(lambda: sum(mark in line for line in observer.lines[since:]) >= times, timeout)
    done = sum(mark in line for line in observer.lines[since:])
    assert done >= times, f"{done} listings of {directory}, {times} awaited:\n{observer.output()}"


def marker_arrives(taken: Taken, directory: Path, name: str, timeout: float = 20.0) -> Counter[str]:
    """Create the marker C{name}; once it arrived, everything pushed before it did: the counts."""
    (directory / name).write_bytes(b"m")
    counts = taken.until({name}, timeout)
    assert counts[name] == 1, counts
    return counts


def exactly_once(counts: Counter[str], names: set[str]) -> None:
    """Every one of C{names} came exactly once, and nothing else came."""
    twice = {name: n for name, n in counts.items() if n > 1}
    assert not twice, f"announced more than once: {twice}"
    assert set(counts) == names, f"missing {names - set(counts)}, unexpected {set(counts) - names}"


# -- 1. forced polls ------------------------------------------------------------------------


def test_forced_polls_every_second_announce_nothing_twice(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    forced_poll = 1: files present at the start and files created while it
    runs are each announced once, through three forced polls and more.
    """
    before = set(make_files(shm, (f"before-{i}" for i in range(5))))
    observer = observer_factory(config(tmp_path, shm, redis_server.port, queue_type, forced_poll=1)).start()
    # After the start-up listing: a file made while a listing runs may be
    # announced by it and by its inotify event (design.md says so).
    listed(observer, shm, 1, since=0)
    during = set(make_files(shm, (f"during-{i}" for i in range(5))))
    mark = observer.mark()
    listed(observer, shm, 3, since=mark)
    counts = marker_arrives(taken, shm, "marker")
    exactly_once(counts, before | during | {"marker"})
    assert {e["event"] for e in taken.events if e["filename"].startswith("before")} == {"exists"}
    assert {e["event"] for e in taken.events if e["filename"].startswith("during")} == {"created"}
    assert taken.client.hlen(RECORD) == len(before | during) + 1


# -- 2. restarts ----------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_a_restart_announces_only_what_appeared_while_it_was_down(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type, stop
) -> None:
    """
    Killed (SIGKILL) or stopped (SIGTERM), then started again: the start-up
    listing announces the files that appeared meanwhile, and only them.
    """
    conf = config(tmp_path, shm, redis_server.port, queue_type)
    first = set(make_files(shm, ("a", "b")))
    observer = observer_factory(conf).start()
    first |= set(make_files(shm, ("c",)))
    taken.until(first)
    if stop == "SIGKILL":
        observer.kill()
        assert observer.returncode == -signal.SIGKILL
    else:
        observer.terminate()
        assert observer.wait() == 0
    down = set(make_files(shm, ("d", "e")))
    again = observer_factory(conf).start()
    listed(again, shm, 1, since=0)  # the start-up listing (ready is said before it ends)
    counts = marker_arrives(taken, shm, "marker")
    exactly_once(counts, first | down | {"marker"})
    assert [e["event"] for e in taken.of("d")] == ["exists"]


# -- 3. kernel queue overflow -----------------------------------------------------------------


def test_an_overflow_announces_every_file_exactly_once(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    The observer is SIGSTOPped while more files than the kernel queues
    (fs.inotify.max_queued_events) are created: after SIGCONT, the events
    read before the overflow and the listing after it announce each file once.
    """
    max_queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    total = max_queued + 2000
    conf = config(tmp_path, shm, redis_server.port, queue_type, poll_queue_limit=0,
                  common={"max_held_events": 4 * total})
    observer = observer_factory(conf).start()
    mark = observer.mark()
    observer.signal(signal.SIGSTOP)
    try:
        names = set(make_files(shm, (f"f{i:06d}" for i in range(total))))
    finally:
        observer.signal(signal.SIGCONT)
    observer.wait_for_line("overflowed", timeout=20, since=mark)
    listed(observer, shm, 1, since=mark, timeout=40)
    taken.until(names, timeout=40)
    counts = marker_arrives(taken, shm, "marker")
    exactly_once(counts, names | {"marker"})


# -- 4. Redis paused ---------------------------------------------------------------------------


def test_redis_paused_shorter_than_timeout_announces_every_file_once(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    Redis is SIGSTOPped while files arrive, and SIGCONTed before the
    round's deadline (timeout = 10): nothing is resent, nothing twice.
    """
    metrics = free_port()
    conf = config(tmp_path, shm, redis_server.port, queue_type, common={"timeout": 10})
    observer = observer_factory(conf, extra_args=[f"--metrics=tcp:{metrics}:interface=127.0.0.1"]).start()
    mark = observer.mark()
    redis_server.pause()
    try:
        names = set(make_files(shm, (f"p{i}" for i in range(5))))
        # The observer read them all: one batch in flight, the rest held.
        assert wait_until(lambda: (held_events(metrics) or 0) >= len(names), 8)
    finally:
        redis_server.resume()
    taken.until(names)
    counts = marker_arrives(taken, shm, "marker")
    exactly_once(counts, names | {"marker"})
    assert not lines_with(observer, "did not answer within"), "\n".join(observer.lines[mark:])


def test_redis_paused_longer_than_timeout_announces_every_file_once(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    Redis is SIGSTOPped longer than the round's deadline (timeout = 1): the
    writer abandons the round and drops the connection, but Redis received
    the transaction and runs it once resumed.  Before sending that batch
    again, the writer asks the record on the new connection whether it ran:
    it did, so it is not sent again, and every file comes exactly once.
    """
    before = set(make_files(shm, ("old",)))
    conf = config(tmp_path, shm, redis_server.port, queue_type, common={"timeout": 1})
    observer = observer_factory(conf).start()
    taken.until(before)
    mark = observer.mark()
    redis_server.pause()
    try:
        names = set(make_files(shm, (f"p{i}" for i in range(5))))
        observer.wait_for_line("did not answer within", timeout=10, since=mark)
        # A connection attempt failed too: the pause outlived the reconnect.
        observer.wait_for_line("retrying until it answers", timeout=10, since=mark)
    finally:
        redis_server.resume()
    taken.until(names)
    # The listing after the reconnect (insurance) is done, then the marker.
    listed(observer, shm, 1, since=mark)
    counts = marker_arrives(taken, shm, "marker")
    exactly_once(counts, before | names | {"marker"})
    # The proof that this was the case under test: Redis ran the batch sent
    # on the dropped connection, and the record said so.
    assert lines_with(observer, "had reached it (their record says so): not sent again"), observer.output()
    assert taken.client.info("commandstats")["cmdstat_client|kill"]["calls"] == 1


# -- 5. the consumer deletes what it took -------------------------------------------------------


def test_a_consumer_deleting_what_it_took_leaves_an_empty_record(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """Files taken and deleted: the next listing's prune empties the record."""
    before = set(make_files(shm, (f"b{i}" for i in range(5))))
    observer = observer_factory(config(tmp_path, shm, redis_server.port, queue_type, forced_poll=1)).start()
    listed(observer, shm, 1, since=0)
    names = before | set(make_files(shm, (f"n{i}" for i in range(5))))
    counts = taken.until(names)
    assert taken.client.hlen(RECORD) == len(names)
    for name in counts:
        os.unlink(shm / name)
    mark = observer.mark()
    listed(observer, shm, 2, since=mark)  # the second began after the deletions
    assert taken.client.hlen(RECORD) == 0, taken.client.hkeys(RECORD)
    exactly_once(taken.counts(), names)


# -- 6. reannounce_after ------------------------------------------------------------------------


def test_reannounce_after_announces_an_untouched_file_again_with_the_same_id(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    reannounce_after = 2 with forced polls every second: a file left alone
    is announced again as "exists", with the same id, size and mtime.
    """
    (shm / "stays").write_bytes(b"12345")
    conf = config(tmp_path, shm, redis_server.port, queue_type, forced_poll=1, reannounce_after=2,
                  extra_fields="id;size;mtime")
    observer_factory(conf).start()
    assert wait_until(lambda: (taken.take(), len(taken.of("stays")) >= 2)[1], 20), taken.events
    first, again = taken.of("stays")[:2]
    assert first["event"] == again["event"] == "exists"
    assert again["id"] == first["id"] and len(str(first["id"])) == 24
    assert int(again["size"]) == 5
    assert float(again["mtime"]) == float(first["mtime"])
    assert float(again["event_timestamp"]) - float(first["event_timestamp"]) >= 2


# -- 7. a file replaced while the observer was stopped -------------------------------------------


def test_a_file_replaced_while_stopped_is_announced_again_with_a_new_id(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    Deleted and made again under its name (another inode) while the
    observer was stopped: the start-up listing announces it again, with
    another id; the untouched file beside it is not announced again.
    """
    conf = config(tmp_path, shm, redis_server.port, queue_type, extra_fields="id")
    make_files(shm, ("replaced", "untouched"))
    observer = observer_factory(conf).start()
    taken.until({"replaced", "untouched"})
    observer.terminate()
    assert observer.wait() == 0
    # The old file is kept open, so its inode cannot be reused by the new one.
    old = os.open(shm / "replaced", os.O_RDONLY)
    try:
        old_ino = os.fstat(old).st_ino
        os.unlink(shm / "replaced")
        (shm / "replaced").write_bytes(b"new")
        assert os.stat(shm / "replaced").st_ino != old_ino
    finally:
        os.close(old)
    again = observer_factory(conf).start()
    listed(again, shm, 1, since=0)
    counts = marker_arrives(taken, shm, "marker")
    assert counts == Counter({"replaced": 2, "untouched": 1, "marker": 1}), counts
    first, again = taken.of("replaced")
    assert again["event"] == "exists"
    assert again["id"] != first["id"]


# -- the record of the wrong type ------------------------------------------------------------------


def test_a_record_of_the_wrong_type_is_said_once_by_each_and_loses_no_event(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    The record's key is a string: the writer says once that Redis refused
    the record (the events are delivered), the listings say once that they
    cannot read it (and announce nothing), however many batches and forced
    polls there are; once the key is deleted, every file present is
    announced (none lost; those announced meanwhile may come twice).
    """
    taken.client.set(RECORD, "not a hash")
    before = set(make_files(shm, ("b0", "b1")))
    conf = config(tmp_path, shm, redis_server.port, queue_type, forced_poll=1)
    observer = observer_factory(conf).start(wait_ready=False)
    observer.wait_for_line("Cannot read the record", timeout=15)
    names = set()
    for i in range(3):  # three batches, each refused its record
        names |= set(make_files(shm, (f"n{i}",)))
        taken.until(names)
    hmget = lambda: taken.client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)  # noqa: E731
    assert wait_until(lambda: hmget() >= 3, 15), "fewer than three listings tried the record"
    assert len(lines_with(observer, "refused the record q:announced")) == 1, observer.output()
    assert len(lines_with(observer, "Cannot read the record")) == 1, observer.output()
    assert not any(e["filename"] in before for e in taken.events), "a listing announced without the record"

    mark = observer.mark()
    taken.client.delete(RECORD)
    observer.wait_for_line("can be read again", timeout=15, since=mark)
    listed(observer, shm, 1, since=mark)
    counts = marker_arrives(taken, shm, "marker")
    assert set(counts) == before | names | {"marker"}, counts
    assert all(counts[name] == 1 for name in before), counts
    assert all(counts[name] <= 2 for name in names), counts
    assert "Traceback" not in observer.output()


# -- with the other sources -------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="a fanotify filesystem mark needs root")
def test_a_fanotify_tree_announces_each_file_once_through_forced_polls(
    tmp_path, shm, redis_server, observer_factory, taken, queue_type
) -> None:
    """
    C{watch_mode = fanotify} on a tree: files present at the start (below
    the top) and files made in a sub-directory while it runs are each
    announced once through three forced polls, their record fields being
    their paths relative to the top.
    """
    (shm / "a" / "b").mkdir(parents=True)
    before = set(make_files(shm / "a", (f"before-{i}" for i in range(5))))
    observer = observer_factory(config(tmp_path, shm, redis_server.port, queue_type, forced_poll=1,
                                       recursive="true", watch_mode="fanotify")).start()
    listed(observer, shm, 1, since=0)
    during = set(make_files(shm / "a" / "b", (f"during-{i}" for i in range(5))))
    mark = observer.mark()
    listed(observer, shm, 3, since=mark)
    counts = marker_arrives(taken, shm, "marker")
    exactly_once(counts, before | during | {"marker"})
    fields = {field.decode() for field in taken.client.hkeys(RECORD)}
    assert fields == ({f"a/{name}" for name in before} | {f"a/b/{name}" for name in during} | {"marker"})
    # The tree is fanotify's: no inotify watch per directory (the watchdog's probe may hold one).
    assert inotify_watches(observer.pid) <= 1
