"""
End-to-end: complete files only (``announce = closed``, ``settle``), with
the real daemon (``twistd -n dirobserver``), a real valkey-server and real
files on tmpfs (/dev/shm, which has O_TMPFILE) when there is one.

A consumer thread stamps every event with the time it was received; the
writers here stamp what they do with the same clock (time.time()), so "no
event before the close" compares the two.  Where "no event" must hold up to
some point, a sentinel file made complete after the action proves it too:
one inotify instance delivers events in order, so the sentinel arriving
without the other file means that file was not announced before it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Observer, RedisServer, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

KIB = b"x" * 1024


class StampingConsumer:
    """BRPOPs one queue in a thread; keeps each event with its receive time."""

    def __init__(self, server: RedisServer, queue: str = "q") -> None:
        self.client = server.client(socket_timeout=5)
        self.queue = queue
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.client.brpop([self.queue], timeout=0.05)
            if item:
                at = time.time()
                with self._lock:
                    self.events.append((at, json.loads(item[1])))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def got(self, name: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        """The events received so far (of file C{name} only, if given)."""
        with self._lock:
            return [(at, e) for at, e in self.events if name is None or e["filename"] == name]

    def names(self) -> set[str]:
        return {e["filename"] for _at, e in self.got()}

    def wait_for(self, name: str, timeout: float) -> float:
        """When the first event of C{name} was received; fails after C{timeout}."""
        assert wait_until(lambda: self.got(name), timeout, interval=0.005), (
            f"{name} not announced within {timeout} s; got {self.got()}")
        return self.got(name)[0][0]


@pytest.fixture
def consumer(redis_server: RedisServer) -> Iterator[StampingConsumer]:
    """A consumer of the queue "q" of the test's server, stopped at the end."""
    made = StampingConsumer(redis_server)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def observe(tmp_path: Path, redis_server: RedisServer, observer_factory: Any) -> Any:
    """C{observe(directory, **keys)}: the daemon on one section, once it has listed it."""

    def started(directory: Path, **keys: Any) -> Observer:
        section = {"active": "true", "directory": str(directory), "queue": "q", **keys}
        common = {"redis_server": "127.0.0.1", "redis_port": redis_server.port, "timeout": 5}
        observer = observer_factory(write_config(tmp_path, {"s": section}, common=common)).start()
        # The start-up listing is done: files made from now on are live events.
        observer.wait_for_line(f"Listed {directory}:", timeout=10)
        return observer

    return started


def write_slowly(f: Any, times: int, pause: float) -> float:
    """Write 1 KiB C{times} times, C{pause} seconds apart; return when the last was written."""
    last = 0.0
    for i in range(times):
        if i:
            time.sleep(pause)  # the pace of a slow writer is what is tested
        f.write(KIB)
        f.flush()
        last = time.time()
    return last


def sentinel(directory: Path, consumer: StampingConsumer, name: str = "sentinel") -> float:
    """Make a small complete file and wait for its event (see the module docstring)."""
    (directory / name).write_bytes(b"done")
    return consumer.wait_for(name, timeout=5)


def test_closed_a_slow_writer_is_announced_once_right_after_its_close(
    shm, observe, consumer
) -> None:
    """1 KiB every 100 ms for 2 s: nothing before the close, one event within a second after."""
    observe(shm, announce="closed")
    with open(shm / "slow", "wb") as f:
        write_slowly(f, 20, 0.1)
        sentinel(shm, consumer)
        assert consumer.got("slow") == []
        closing = time.time()
    received = consumer.wait_for("slow", timeout=1.0)
    assert closing <= received <= closing + 1.0
    sentinel(shm, consumer, "sentinel-2")
    events = consumer.got("slow")
    assert len(events) == 1, events
    assert events[0][1]["event"] == "created"
    # Stamped when it became complete, not when its name appeared.
    assert events[0][1]["event_timestamp"] >= closing


def test_closed_a_hundred_files_open_at_once_each_announced_after_its_own_close(
    shm, observe, consumer
) -> None:
    observe(shm, announce="closed")
    names = [f"f{i:03d}" for i in range(100)]
    files = {name: open(shm / name, "wb") for name in names}
    for _round in range(5):
        for f in files.values():
            f.write(KIB)
            f.flush()
        time.sleep(0.05)  # the writes are spread out in time, as a real writer's
    sentinel(shm, consumer)
    assert consumer.names() == {"sentinel"}
    closing: dict[str, float] = {}
    order = names[:]
    random.shuffle(order)
    for name in order:
        closing[name] = time.time()
        files[name].close()
        time.sleep(0.002)  # closes apart in time: each file's event is timed to its own close
    assert wait_until(lambda: consumer.names() >= set(names), 5), set(names) - consumer.names()
    sentinel(shm, consumer, "sentinel-2")
    events = [(at, e) for at, e in consumer.got() if e["filename"] in closing]
    assert sorted(e["filename"] for _at, e in events) == names  # exactly one each
    early = [(e["filename"], at - closing[e["filename"]]) for at, e in events if at < closing[e["filename"]]]
    assert early == []


def test_closed_links_moves_and_linkat_of_an_unnamed_file_are_announced_at_once(
    shm, observe, consumer
) -> None:
    """Names that appear without a close of this directory's file never wait for one."""
    watched = shm / "in"
    outside = shm / "out"
    watched.mkdir()
    outside.mkdir()
    (outside / "original").write_bytes(b"content")
    observe(watched, announce="closed", subdirectories="true")

    def at_once(name: str, make: Any) -> None:
        made = time.time()
        make()
        received = consumer.wait_for(name, timeout=2.0)
        assert received - made < 1.0, (name, received - made)

    at_once("hard", lambda: os.link(outside / "original", watched / "hard"))
    at_once("symbolic", lambda: os.symlink(outside / "original", watched / "symbolic"))
    (outside / "moved").write_bytes(b"complete")
    at_once("moved", lambda: os.rename(outside / "moved", watched / "moved"))
    at_once("sub", lambda: os.mkdir(watched / "sub"))
    # An O_TMPFILE written, then given a name with linkat(AT_SYMLINK_FOLLOW)
    # (os.link with a directory descriptor); its descriptor stays open.
    fd = os.open(watched, os.O_TMPFILE | os.O_WRONLY, 0o644)
    directory = os.open(watched, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.write(fd, b"written before it had a name")
        at_once("unnamed", lambda: os.link(f"/proc/self/fd/{fd}", "unnamed", dst_dir_fd=directory))
        assert (watched / "unnamed").read_bytes() == b"written before it had a name"
    finally:
        os.close(directory)
        os.close(fd)
    sentinel(watched, consumer)
    counts = {name: len(consumer.got(name)) for name in ("hard", "symbolic", "moved", "sub", "unnamed")}
    assert counts == dict.fromkeys(counts, 1)


def test_closed_a_file_deleted_or_moved_away_before_its_close_is_never_announced(
    shm, observe, consumer
) -> None:
    watched = shm / "in"
    watched.mkdir()
    observe(watched, announce="closed")
    with open(watched / "deleted", "wb") as doomed, open(watched / "moved-away", "wb") as leaving:
        doomed.write(KIB)
        leaving.write(KIB)
        os.unlink(watched / "deleted")
        os.rename(watched / "moved-away", shm / "moved-away")
        doomed.write(KIB)
        leaving.write(KIB)
    sentinel(watched, consumer)
    assert consumer.names() == {"sentinel"}


def test_settle_in_created_mode_waits_for_a_second_of_quiet_after_the_last_write(
    shm, observe, consumer
) -> None:
    observe(shm, settle="1")
    with open(shm / "settling", "wb") as f:
        last_write = write_slowly(f, 8, 0.2)
    received = consumer.wait_for("settling", timeout=3.0)
    assert received >= last_write + 1.0, received - last_write
    assert received <= last_write + 2.0, received - last_write
    event = consumer.got("settling")[0][1]
    assert event["event"] == "created" and event["event_timestamp"] >= last_write + 1.0


def test_settle_start_up_listing_waits_for_young_files_and_announces_old_ones(
    shm, observe, consumer
) -> None:
    (shm / "old").write_bytes(b"old")
    os.utime(shm / "old", (time.time() - 60, time.time() - 60))
    (shm / "young").write_bytes(b"young")
    made = os.stat(shm / "young").st_mtime
    observe(shm, settle="2")
    received = consumer.wait_for("young", timeout=10.0)
    assert received >= made + 2.0
    consumer.wait_for("old", timeout=1.0)
    assert sorted((e["filename"], e["event"]) for _at, e in consumer.got()) == [
        ("old", "exists"), ("young", "exists")]


def test_closed_observer_killed_mid_write_and_restarted_announces_the_file_once_after_its_close(
    shm, observe, consumer
) -> None:
    """closed + settle 1: the restart's listing finds the file young, and its writes keep it waiting."""
    keys = {"announce": "closed", "settle": "1"}
    first = observe(shm, **keys)
    closed_at: list[float] = []
    written = threading.Event()
    restarted = threading.Event()

    def writer() -> None:
        with open(shm / "half", "wb") as f:
            for i in range(60):
                f.write(KIB)
                f.flush()
                if i == 5:
                    written.set()
                if restarted.is_set() and i >= 45:
                    break
                time.sleep(0.1)  # a slow writer, still writing across the restart
            closed_at.append(time.time())

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(5)
        first.kill()
        second = observe(shm, **keys)
        restarted.set()
    finally:
        thread.join(30)
    assert closed_at, "the writer did not finish"
    received = consumer.wait_for("half", timeout=3.0)
    assert received >= closed_at[0] + 1.0, received - closed_at[0]
    sentinel(shm, consumer)
    assert len(consumer.got("half")) == 1
    assert second.is_running()


def test_closed_kernel_queue_overflow_loses_no_file(
    shm, observe, consumer
) -> None:
    """
    Each file costs three events now (created, opened, closed): far more
    than the queue holds are made while the observer is stopped, and files
    it saw opened are closed then, their closes lost with the overflow.
    """
    max_queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    total = max_queued // 3 + 20_000
    observer = observe(shm, announce="closed", poll_queue_limit=0)
    open_files = [open(shm / f"open{i}", "wb") for i in range(10)]
    sentinel(shm, consumer)  # the observer saw them opened
    base = str(shm)
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    observer.signal(signal.SIGSTOP)
    try:
        for i in range(total):
            fd = os.open(os.path.join(base, f"f{i:06d}"), flags, 0o644)
            os.write(fd, b"x")
            os.close(fd)
        for f in open_files:
            f.write(b"complete")
            f.close()
    finally:
        observer.signal(signal.SIGCONT)
    names = {f"f{i:06d}" for i in range(total)} | {f"open{i}" for i in range(10)}
    assert wait_until(lambda: consumer.names() >= names, 60, interval=0.1), (
        f"never announced: {sorted(names - consumer.names())[:20]}")
    assert any("overflowed" in line for line in observer.output().splitlines())
    assert observer.is_running()
