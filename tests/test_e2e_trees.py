"""
End-to-end: whole trees (``recursive``, ``ignore_directories``) and polling
(``watch_mode = poll``), with the real daemon, a real valkey-server and real
directories on tmpfs (/dev/shm) when there is one.

Every event of the queue is collected by a thread as (directory, filename,
event); "all announced" compares sets of paths, so a duplicate (a file made
between a new sub-directory's watch and its reading is announced twice, by
design) does not hide a missing file.  "Nothing announced" is proved by a
sentinel created after the action: the events of one source come in order.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Observer, RedisServer, section, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


class Collector:
    """BRPOPs queue C{q} in a thread and keeps every event."""

    def __init__(self, server: RedisServer, queue: str = "q") -> None:
        self.client = server.client(socket_timeout=5)
        self.queue = queue
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.client.brpop([self.queue], timeout=0.05)
            if item:
                more = self.client.rpop(self.queue, 10_000) or []
                with self._lock:
                    self.events += [json.loads(raw) for raw in [item[1], *more]]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def paths(self, event: str | None = None) -> list[str]:
        """The path of every event so far (of kind C{event} only, if given)."""
        with self._lock:
            return [os.path.join(e["directory"], e["filename"]) for e in self.events
                    if event is None or e["event"] == event]

    def wait_all(self, expected: set[str], timeout: float) -> set[str]:
        """Wait until every path of C{expected} was announced; return the missing ones."""
        wait_until(lambda: expected <= set(self.paths()), timeout, interval=0.02)
        return expected - set(self.paths())



def start(observer_factory, tmp_path: Path, port: int, sections: dict[str, dict[str, Any]],
          **common: Any) -> Observer:
    values = {"redis_server": "127.0.0.1", "redis_port": port, "poll_queue_limit": 0, **common}
    config = write_config(tmp_path, sections, common=values)
    return observer_factory(config).start()


def write(path: Path, data: bytes = b"x") -> str:
    path.write_bytes(data)
    return str(path)


def warnings_of(observer: Observer) -> list[str]:
    return [line for line in observer.output().splitlines() if "#warn]" in line or "#error]" in line]


# -- trees ----------------------------------------------------------------------------


def test_new_nested_subdirectories_filled_at_once_lose_nothing(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    200 times ``mkdir -p sNNN/a/b && touch sNNN/a/b/f0..f4``, as fast as
    possible: every one of the 1,000 files is announced, with the directory
    that holds it and its plain name.
    """
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"tree": section(shm, recursive="true")})
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    expected = set()
    for i in range(200):
        deep = shm / f"s{i:03d}" / "a" / "b"
        deep.mkdir(parents=True)
        for j in range(5):
            expected.add(write(deep / f"f{j}"))
    missing = collector.wait_all(expected, timeout=20)
    assert not missing, f"{len(missing)} files never announced, e.g. {sorted(missing)[:5]}"
    assert set(collector.paths()) == expected  # nothing else (no directory, no other path)
    assert set(collector.paths("created")) == expected
    assert not warnings_of(observer)


def test_a_tree_moved_in_is_announced_whole_then_watched(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    50 sub-directories of 100 files, made elsewhere then moved in with one
    rename: all 5,000 files are announced; a file made later in one of the
    sub-directories is announced too, so the moved-in tree is watched.  The
    tree already there at start-up is listed ("exists") with its directories.
    """
    watched, outside = shm / "in", shm / "outside"
    (watched / "old" / "deep").mkdir(parents=True)
    old = {write(watched / "top.txt"), write(watched / "old" / "deep" / "o.txt")}
    staged = outside / "batch"
    expected = set()
    for i in range(50):
        sub = staged / f"d{i:02d}"
        sub.mkdir(parents=True)
        expected |= {write(sub / f"f{j:03d}") for j in range(100)}
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"tree": section(watched, recursive="true")})
    collector = collectors(redis_server)
    assert not collector.wait_all(old, timeout=10)
    assert set(collector.paths("exists")) == old

    os.rename(staged, watched / "batch")
    moved = {p.replace(str(outside), str(watched)) for p in expected}
    missing = collector.wait_all(moved, timeout=20)
    assert not missing, f"{len(missing)} files of the moved tree never announced"
    assert set(collector.paths("created")) == moved
    later = write(watched / "batch" / "d17" / "later.csv")
    assert not collector.wait_all({later}, timeout=5)
    assert not warnings_of(observer)


def test_a_subtree_removed_and_made_again_is_watched_again(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    Removing a sub-tree ends its watches quietly (no warning), the rest of
    the tree goes on, and a sub-tree made again under the same name is
    watched again.  A sub-directory renamed within the tree is watched under
    its new name.
    """
    (shm / "x" / "y").mkdir(parents=True)
    (shm / "keep").mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"tree": section(shm, recursive="true")})
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    first = write(shm / "x" / "y" / "one")
    assert not collector.wait_all({first}, timeout=5)
    mark = observer.mark()
    shutil.rmtree(shm / "x")
    observer.wait_for_line("is gone", since=mark)
    still = write(shm / "keep" / "still")
    assert not collector.wait_all({still}, timeout=5)
    (shm / "x" / "y").mkdir(parents=True)
    again = write(shm / "x" / "y" / "again")
    assert not collector.wait_all({again}, timeout=5)
    mark = observer.mark()
    os.rename(shm / "x", shm / "renamed")
    # The end of the old name's watch is read in the same batch as the new
    # name's arrival: from then on a new file is seen under the new name.
    observer.wait_for_line(f"{shm / 'x'} is gone", since=mark)
    renamed = write(shm / "renamed" / "y" / "after-rename")
    assert not collector.wait_all({renamed}, timeout=5)
    assert str(shm / "x" / "y" / "after-rename") not in collector.paths()
    assert not warnings_of(observer), warnings_of(observer)
    assert observer.is_running()


def test_ignored_directories_and_the_default_stays_flat(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    ``ignore_directories = ^\\.``: a hidden staging directory is neither
    listed nor watched, while the rest of the tree is.  A section without
    ``recursive`` announces nothing below its directory, as before.
    """
    tree, flat = shm / "tree", shm / "flat"
    for d in (tree / ".staging", tree / "ok", flat / "sub"):
        d.mkdir(parents=True)
    write(tree / ".staging" / "old-hidden")
    listed = write(tree / "ok" / "old")
    observer = start(observer_factory, tmp_path, redis_server.port, {
        "tree": section(tree, recursive="true", ignore_directories=r"^\."),
        "flat": section(flat, queue="q2"),
    })
    tree_events, flat_events = collectors(redis_server), collectors(redis_server, "q2")
    assert not tree_events.wait_all({listed}, timeout=10)
    write(tree / ".staging" / "hidden")
    (tree / ".staging" / "deeper").mkdir()
    write(tree / ".staging" / "deeper" / "hidden")
    (tree / ".new-hidden").mkdir()
    write(tree / ".new-hidden" / "hidden")
    sentinel = write(tree / "ok" / "sentinel")
    assert not tree_events.wait_all({sentinel}, timeout=5)
    write(flat / "sub" / "below")
    flat_sentinel = write(flat / "top")
    assert not flat_events.wait_all({flat_sentinel}, timeout=5)
    # The sentinels came after every earlier event of their queue.
    assert set(tree_events.paths()) == {listed, sentinel}
    assert set(flat_events.paths()) == {flat_sentinel}
    assert observer.is_running()


# -- polling ------------------------------------------------------------------------------


def inotify_watched_inodes(pid: int) -> set[int]:
    """The inodes the inotify descriptors of process C{pid} watch (from /proc's fdinfo)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("inotify wd:"):
                        fields = dict(item.split(":", 1) for item in line.split()[1:])
                        inodes.add(int(fields["ino"], 16))
        except OSError:
            continue
    return inodes


def test_poll_mode_announces_each_new_file_once_without_inotify(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    ``watch_mode = poll``: files present at start are announced as
    "exists", each new file as "created" once (never again at later polls),
    in sub-directories too (``recursive``); inotify watches neither the
    directory nor its sub-directories, while an ``auto`` section on this
    local filesystem is watched by inotify.
    """
    polled, local = shm / "polled", shm / "local"
    (polled / "sub").mkdir(parents=True)
    local.mkdir()
    present = write(polled / "present")
    observer = start(observer_factory, tmp_path, redis_server.port, {
        "polled": section(polled, watch_mode="poll", poll_interval="0.2", recursive="true"),
        "local": section(local, queue="q2"),
    })
    collector = collectors(redis_server)
    assert not collector.wait_all({present}, timeout=10)
    new = {write(polled / f"new{i}") for i in range(20)}
    new.add(write(polled / "sub" / "deep"))
    (polled / "fresh" / "deeper").mkdir(parents=True)
    new.add(write(polled / "fresh" / "deeper" / "f"))
    assert not collector.wait_all(new, timeout=10)
    # Three more polls, each witnessed by a file it announces: a file found
    # again would come before the marker of a later poll.
    markers = set()
    for i in range(3):
        markers.add(write(polled / f"marker{i}"))
        assert not collector.wait_all(markers, timeout=10), f"marker{i} never announced"
    assert sorted(collector.paths("created")) == sorted(new | markers)
    assert collector.paths("exists") == [present]

    watched = inotify_watched_inodes(observer.pid)
    assert local.stat().st_ino in watched  # the reading of fdinfo works
    for directory in (polled, polled / "sub", polled / "fresh", polled / "fresh" / "deeper"):
        assert directory.stat().st_ino not in watched, directory
    assert "polling it" not in observer.output()  # auto on a local filesystem: inotify


def test_poll_mode_with_settle_announces_a_file_once_unchanged(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """``settle`` in poll mode: a file written slowly is announced once,
    ``settle`` seconds or more after its last write."""
    observer = start(observer_factory, tmp_path, redis_server.port, {
        "polled": section(shm, watch_mode="poll", poll_interval="0.2", settle="0.8"),
    })
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    slow = shm / "slow"
    with open(slow, "wb") as f:
        for i in range(4):
            if i:
                time.sleep(0.4)  # a slow writer: the pause is what settle is tested against
            f.write(b"x" * 1024)
            f.flush()
            last_write = time.time()
        assert collector.paths() == []
    assert not collector.wait_all({str(slow)}, timeout=10)
    received = time.time()
    assert received >= last_write + 0.8
    # A file made now is announced a settle period and several polls later,
    # after anything those polls would say of the slow file again.
    marker = write(shm / "marker")
    assert not collector.wait_all({marker}, timeout=10), "marker never announced"
    assert collector.paths() == [str(slow), marker]


def test_announce_closed_and_settle_apply_in_a_tree(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    ``announce = closed`` with a ``settle`` in a tree: files written slowly
    in a sub-directory, old or new, are announced once, after their close
    and ``settle`` seconds without a write, with their own directory.
    """
    (shm / "old").mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port, {
        "tree": section(shm, recursive="true", announce="closed", settle="0.5"),
    })
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    (shm / "new" / "deeper").mkdir(parents=True)
    # The new sub-directories are watched: a file in the deepest one is
    # announced (a sub-directory is watched before it is read).
    probe = write(shm / "new" / "deeper" / "probe")
    assert not collector.wait_all({probe}, timeout=10), "probe never announced"
    paths = [shm / "old" / "a.dat", shm / "new" / "deeper" / "b.dat"]
    files = [open(path, "wb") for path in paths]
    for _ in range(3):
        for f in files:
            f.write(b"x" * 100)
            f.flush()
        time.sleep(0.3)  # written slowly: the time between writes is what is tested
    assert collector.paths() == [probe]
    for f in files:
        f.close()
    closed = time.time()
    assert not collector.wait_all({str(p) for p in paths}, timeout=10)
    assert time.time() >= closed + 0.5
    # A file closed now is announced after its own settle period, so after
    # anything still waiting about the slow files.
    marker = write(shm / "old" / "marker")
    assert not collector.wait_all({marker}, timeout=10), "marker never announced"
    assert sorted(collector.paths("created")) == sorted([probe, marker, *map(str, paths)])
    assert len(collector.paths()) == 4
