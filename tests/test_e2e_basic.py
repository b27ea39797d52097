"""
End-to-end behaviour of the observer: the real daemon (``twistd -n
dirobserver``), a real valkey-server and real directories under tmp_path.

Each test names the behaviour it proves.  "No event" is never proved by
sleeping: a sentinel file is created after the action that must give no
event, and since one inotify instance delivers events in order, the sentinel
arriving first (or alone) proves nothing was announced before it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Observer, drain, free_port, pop_raw, section, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

EVENT_KEYS = {"directory", "filename", "event", "event_timestamp"}


# -- glue -----------------------------------------------------------------------


def start(
    observer_factory: Callable[..., Observer],
    tmp_path: Path,
    port: int,
    sections: Mapping[str, Mapping[str, Any]],
    wait_ready: bool = True,
    timeout: float = 15.0,
    **common: Any,
) -> Observer:
    """Write a configuration for Redis on C{port} and start the daemon."""
    values = {"redis_server": "127.0.0.1", "redis_port": port, **common}
    config = write_config(tmp_path, sections, common=values)
    return observer_factory(config).start(wait_ready=wait_ready, timeout=timeout)


def wait_listed(observer: Observer, directory: Path, since: int = 0, timeout: float = 5.0) -> None:
    """
    Wait until the daemon has listed C{directory} (its start-up listing, or the
    listing after the directory is watched again).  Creating files before
    that would race with the listing: a file could be announced twice.
    """
    observer.wait_for_line(f"Listed {directory}:", timeout=timeout, since=since)


def collect_until(
    client: Any, queue: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Pop events until one satisfies C{done} (included) or C{timeout} passes."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.rpop(queue)
        if raw is None:
            time.sleep(0.01)
            continue
        events.append(json.loads(raw))
        if done(events[-1]):
            return events
    raise AssertionError(f"the awaited event did not arrive within {timeout} s; got {events}")


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["filename"], e["event"]) for e in events]


def check_event(event: dict[str, Any], directory: Path, started: float) -> None:
    """The JSON has exactly the four keys, the right directory and a fresh timestamp."""
    assert set(event) == EVENT_KEYS, event
    assert event["directory"] == str(directory), event
    assert isinstance(event["event_timestamp"], float), event
    assert started - 1 <= event["event_timestamp"] <= time.time() + 1, event


def touch(path: Path, mtime: float | None = None) -> None:
    path.write_bytes(b"data")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


# -- live events -----------------------------------------------------------------


def test_created_moved_in_and_renamed_within_each_give_one_created_event(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    outside = tmp_path / "outside"
    watched.mkdir()
    outside.mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"in": section(watched, counter="cnt")})
    wait_listed(observer, watched)
    started = time.time()

    touch(watched / "new.dat")                               # created in it
    touch(outside / "moved.dat")
    os.rename(outside / "moved.dat", watched / "moved.dat")  # moved into it
    touch(watched / "draft.working")
    os.rename(watched / "draft.working", watched / "final.dat")  # renamed within it
    os.rename(watched / "new.dat", watched / "new-renamed.dat")  # renamed within it
    touch(watched / "last.dat")

    events = drain(redis_client, "q", 5, timeout=5)
    assert summary(events) == [
        ("new.dat", "created"),
        ("moved.dat", "created"),
        ("final.dat", "created"),
        ("new-renamed.dat", "created"),
        ("last.dat", "created"),
    ]
    for event in events:
        check_event(event, watched, started)
    assert redis_client.llen("q") == 0
    assert int(redis_client.get("cnt")) == 5


def test_events_are_lpushed_so_rpop_gives_oldest_first_and_counter_counts_them(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"in": section(watched, counter="counter:in")})
    wait_listed(observer, watched)
    names = [f"f{i:02d}.dat" for i in range(20)]
    for name in names:
        touch(watched / name)

    assert wait_until(lambda: redis_client.llen("q") == 20, timeout=5), redis_client.llen("q")
    # LPUSH: the newest event is at the head, the oldest at the tail.
    assert json.loads(redis_client.lindex("q", 0))["filename"] == names[-1]
    assert json.loads(redis_client.lindex("q", -1))["filename"] == names[0]
    assert int(redis_client.get("counter:in")) == 20
    events = drain(redis_client, "q", 20, timeout=2)
    assert [e["filename"] for e in events] == names
    assert {e["event"] for e in events} == {"created"}

    touch(watched / "one-more.dat")
    assert summary(drain(redis_client, "q", 1, timeout=5)) == [("one-more.dat", "created")]
    assert int(redis_client.get("counter:in")) == 21


# -- the start-up listing ---------------------------------------------------------


def test_startup_listing_announces_existing_files_as_exists_oldest_mtime_first(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    now = time.time()
    # Name order, creation order and mtime order all differ.
    for name, age in [("a.dat", 100), ("d.dat", 400), ("b.dat", 50), ("c.dat", 300)]:
        touch(watched / name, now - age)
    started = time.time()
    start(observer_factory, tmp_path, redis_server.port, {"in": section(watched, counter="cnt")})

    events = drain(redis_client, "q", 4, timeout=5)
    assert summary(events) == [
        ("d.dat", "exists"), ("c.dat", "exists"), ("a.dat", "exists"), ("b.dat", "exists"),
    ]
    for event in events:
        check_event(event, watched, started)
    assert int(redis_client.get("cnt")) == 4


def test_startup_listing_announces_only_the_room_left_under_poll_queue_limit(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    now = time.time()
    for i in range(6):
        touch(watched / f"file{i}.dat", now - 100 + i)  # file0 oldest
    # The consumer is behind: 3 items wait in the queue; the limit is 5.
    for i in range(3):
        redis_client.lpush("q", json.dumps({"backlog": i}))
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"in": section(watched, poll_queue_limit=5)})
    observer.wait_for_line("poll_queue_limit", timeout=5)
    assert wait_until(lambda: redis_client.llen("q") >= 5, timeout=5)

    # Stopping flushes whatever the daemon still holds: nothing more may come.
    observer.terminate()
    observer.wait(15)
    assert redis_client.llen("q") == 5
    items = drain(redis_client, "q", 5, timeout=1)
    assert items[:3] == [{"backlog": 0}, {"backlog": 1}, {"backlog": 2}]
    assert summary(items[3:]) == [("file0.dat", "exists"), ("file1.dat", "exists")]


def test_working_files_ignore_and_only_filter_listing_and_live_events(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    for name in ["keep1.dat", "skip1.dat", "other1.txt", "part1.dat.working"]:
        touch(watched / name)
    observer = start(
        observer_factory, tmp_path, redis_server.port,
        {"in": section(watched, ignore=r"^skip.*$;^nothing$", only=r"^.*\.dat$;^.*\.working$")},
    )
    wait_listed(observer, watched)
    assert summary(drain(redis_client, "q", 1, timeout=5)) == [("keep1.dat", "exists")]

    for name in ["keep2.dat", "skip2.dat", "other2.txt", "part2.dat.working"]:
        touch(watched / name)
    os.rename(watched / "part2.dat.working", watched / "part2.dat")  # finished writing
    touch(watched / "zz-sentinel.dat")

    events = drain(redis_client, "q", 3, timeout=5)
    assert summary(events) == [
        ("keep2.dat", "created"), ("part2.dat", "created"), ("zz-sentinel.dat", "created"),
    ]
    assert redis_client.llen("q") == 0


# -- forced poll -----------------------------------------------------------------


def test_forced_poll_announces_present_files_again_as_exists(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"in": section(watched, forced_poll=1)})
    wait_listed(observer, watched)
    touch(watched / "p.dat")

    events = drain(redis_client, "q", 2, timeout=4)
    assert summary(events) == [("p.dat", "created"), ("p.dat", "exists")]
    gap = events[1]["event_timestamp"] - events[0]["event_timestamp"]
    assert 0 <= gap < 2.5, gap
    # And again at the next poll: the poll is periodic.
    assert summary(drain(redis_client, "q", 1, timeout=3)) == [("p.dat", "exists")]


# -- sub-directories --------------------------------------------------------------


def test_subdirectories_are_ignored_by_default_and_never_watched(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    (watched / "old-sub").mkdir(parents=True)
    touch(watched / "pre.dat")
    observer = start(observer_factory, tmp_path, redis_server.port, {"in": section(watched)})
    wait_listed(observer, watched)
    assert summary(drain(redis_client, "q", 1, timeout=5)) == [("pre.dat", "exists")]

    (watched / "new-sub").mkdir()
    touch(watched / "new-sub" / "inner.dat")
    touch(watched / "old-sub" / "inner.dat")
    touch(watched / "sentinel.dat")
    assert summary(drain(redis_client, "q", 1, timeout=5)) == [("sentinel.dat", "created")]
    assert redis_client.llen("q") == 0


def test_subdirectories_true_announces_subdirectories_but_not_their_content(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    (watched / "old-sub").mkdir(parents=True)
    now = time.time()
    os.utime(watched / "old-sub", (now - 200, now - 200))
    touch(watched / "pre.dat", now - 100)
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"in": section(watched, subdirectories="true")})
    wait_listed(observer, watched)
    assert summary(drain(redis_client, "q", 2, timeout=5)) == [
        ("old-sub", "exists"), ("pre.dat", "exists"),
    ]

    (watched / "new-sub").mkdir()
    touch(watched / "new-sub" / "inner.dat")
    touch(watched / "old-sub" / "inner.dat")
    touch(watched / "sentinel.dat")
    assert summary(drain(redis_client, "q", 2, timeout=5)) == [
        ("new-sub", "created"), ("sentinel.dat", "created"),
    ]
    assert redis_client.llen("q") == 0


# -- odd file names ----------------------------------------------------------------


def test_odd_file_names_are_announced_in_surrogateescape_form_without_stalling(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    bdir = os.fsencode(watched)

    def create(name: bytes) -> None:
        os.close(os.open(os.path.join(bdir, name), os.O_CREAT | os.O_WRONLY, 0o644))

    create(b"pre \xe9\n.dat")  # Latin-1 e-acute: not UTF-8; and a newline
    observer = start(observer_factory, tmp_path, redis_server.port, {"in": section(watched)})
    wait_listed(observer, watched)
    live = [b"with  spaces .dat", b"new\nline.dat", b"\xff\xfe.dat", "caf\u00e9.dat".encode()]
    for name in live:
        create(name)
    create(b"after.dat")

    raws = pop_raw(redis_client, "q", 6, timeout=5)
    for raw in raws:
        raw.decode("ascii")  # the JSON text is pure ASCII whatever the name
    events = [json.loads(raw) for raw in raws]
    assert summary(events) == [(os.fsdecode(b"pre \xe9\n.dat"), "exists")] + [
        (os.fsdecode(name), "created") for name in live
    ] + [("after.dat", "created")]
    assert [os.fsencode(e["filename"]) for e in events] == [b"pre \xe9\n.dat", *live, b"after.dat"]
    assert events[3]["filename"] == "\udcff\udcfe.dat"  # lone surrogates
    assert events[4]["filename"] == "caf\u00e9.dat"  # valid UTF-8 stays as it is
    assert observer.is_running()

    create(b"normal.dat")
    assert summary(drain(redis_client, "q", 1, timeout=5)) == [("normal.dat", "created")]


# -- directory lifecycle -------------------------------------------------------------


def test_directory_missing_at_start_is_reported_and_watched_once_created(
    tmp_path, redis_server, redis_client, observer_factory
):
    later = tmp_path / "later"
    observer = start(observer_factory, tmp_path, redis_server.port, {"later": section(later)})
    line = observer.wait_for_line("does not exist", timeout=2)
    assert str(later) in line and "[later]" in line
    assert observer.is_running()

    mark = observer.mark()
    began = time.monotonic()
    later.mkdir()
    touch(later / "first.dat")
    first = collect_until(redis_client, "q", lambda e: e["filename"] == "first.dat", timeout=5)
    took = time.monotonic() - began
    print(f"directory created -> first event in {took:.2f} s")
    assert took < 3, took
    assert first[-1]["event"] in ("exists", "created")

    wait_listed(observer, later, since=mark)
    touch(later / "second.dat")
    rest = collect_until(redis_client, "q", lambda e: e["filename"] == "second.dat", timeout=5)
    # Only possible extra: first.dat once more (seen by both inotify and the listing).
    assert {e["filename"] for e in rest[:-1]} <= {"first.dat"}
    assert rest[-1]["event"] == "created"
    assert observer.is_running()


def test_deleted_directory_is_reported_others_keep_working_and_it_is_watched_again(
    tmp_path, redis_server, redis_client, observer_factory
):
    """The DELETE_SELF trap: Twisted's INotify ends every watch when one
    watched directory is deleted; here the other directory keeps working."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"a": section(a, "qa"), "b": section(b, "qb")})
    wait_listed(observer, a)
    wait_listed(observer, b)

    mark = observer.mark()
    a.rmdir()
    names = [f"b{i}.dat" for i in range(5)]
    for name in names:  # right after the deletion, in the same inotify stream
        touch(b / name)
    assert summary(drain(redis_client, "qb", 5, timeout=5)) == [(n, "created") for n in names]
    line = observer.wait_for_line(f"{a} was deleted", timeout=5, since=mark)
    assert "[a]" in line
    assert observer.is_running()

    mark = observer.mark()
    a.mkdir()
    touch(a / "before.dat")  # before the directory is watched again
    wait_listed(observer, a, since=mark)
    touch(a / "after.dat")
    events = collect_until(redis_client, "qa", lambda e: e["filename"] == "after.dat", timeout=5)
    assert {e["filename"] for e in events} == {"before.dat", "after.dat"}, events
    assert events[-1]["event"] == "created"

    touch(b / "b-final.dat")
    assert summary(drain(redis_client, "qb", 1, timeout=5)) == [("b-final.dat", "created")]


def test_renamed_away_directory_is_no_longer_watched_until_the_path_exists_again(
    tmp_path, redis_server, redis_client, observer_factory
):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"a": section(a, "qa"), "b": section(b, "qb")})
    wait_listed(observer, a)
    wait_listed(observer, b)

    mark = observer.mark()
    moved = tmp_path / "a-moved"
    a.rename(moved)
    line = observer.wait_for_line(f"{a} was moved or renamed", timeout=5, since=mark)
    assert "[a]" in line
    touch(moved / "ghost.dat")  # in the directory's new place: not announced
    touch(b / "sentinel.dat")
    assert summary(drain(redis_client, "qb", 1, timeout=5)) == [("sentinel.dat", "created")]
    assert redis_client.llen("qa") == 0

    mark = observer.mark()
    a.mkdir()
    wait_listed(observer, a, since=mark)
    touch(moved / "ghost2.dat")
    touch(a / "fresh.dat")
    assert summary(drain(redis_client, "qa", 1, timeout=5)) == [("fresh.dat", "created")]
    assert redis_client.llen("qa") == 0
    assert observer.is_running()


def test_directory_replaced_by_a_file_is_reported_and_watched_again_as_a_directory(
    tmp_path, redis_server, redis_client, observer_factory
):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"a": section(a, "qa"), "b": section(b, "qb")})
    wait_listed(observer, a)
    wait_listed(observer, b)

    mark = observer.mark()
    a.rmdir()
    a.write_bytes(b"a regular file now")
    line = observer.wait_for_line(f"{a} is not a directory", timeout=5, since=mark)
    assert "[a]" in line
    assert observer.is_running()
    touch(b / "still.dat")
    assert summary(drain(redis_client, "qb", 1, timeout=5)) == [("still.dat", "created")]

    mark = observer.mark()
    a.unlink()
    a.mkdir()
    wait_listed(observer, a, since=mark)
    touch(a / "back.dat")
    assert summary(drain(redis_client, "qa", 1, timeout=5)) == [("back.dat", "created")]
    assert redis_client.llen("qa") == 0
    assert observer.is_running()


# -- several sections ----------------------------------------------------------------


def test_two_sections_on_the_same_directory_both_get_every_event(
    tmp_path, redis_server, redis_client, observer_factory
):
    shared = tmp_path / "shared"
    shared.mkdir()
    touch(shared / "pre.dat")
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"one": section(shared, "q1", counter="c1"),
                      "two": section(shared, "q2", counter="c2")})
    assert wait_until(lambda: observer.output().count(f"Listed {shared}:") >= 2, timeout=5), \
        observer.output()
    for name in ["x.dat", "y.dat"]:
        touch(shared / name)

    expected = [("pre.dat", "exists"), ("x.dat", "created"), ("y.dat", "created")]
    assert summary(drain(redis_client, "q1", 3, timeout=5)) == expected
    assert summary(drain(redis_client, "q2", 3, timeout=5)) == expected
    assert int(redis_client.get("c1")) == 3
    assert int(redis_client.get("c2")) == 3


def test_a_thousand_directories_in_one_process_get_ready_fast_and_deliver_every_event(
    tmp_path, redis_server, redis_client, observer_factory
):
    count = 1000
    root = tmp_path / "many"
    dirs = [root / f"d{i:04d}" for i in range(count)]
    for d in dirs:
        d.mkdir(parents=True)
    sections = {f"s{i:04d}": section(d, "q") for i, d in enumerate(dirs)}

    began = time.monotonic()
    observer = start(observer_factory, tmp_path, redis_server.port, sections, timeout=30)
    ready = time.monotonic() - began
    print(f"1000 directories: ready in {ready:.2f} s")
    assert f"watching {count} of {count} directories" in observer.wait_for_line("dirobserver ready")
    assert ready < 5, ready
    assert wait_until(lambda: observer.output().count("Listed ") >= count, timeout=20)
    # The first hundred say so at info level, the others at debug level,
    # and one line says how many (10,000 lines would cost a second).
    watching = [line for line in observer.output().splitlines() if "] Watching " in line and "-> queue" in line]
    assert sum("#info]" in line for line in watching) == 100
    assert sum("#debug]" in line for line in watching) == count - 100
    assert f"... and {count - 100} more directories, each said at debug level" in observer.output()

    for d in dirs:
        touch(d / "file.dat")
    events = drain(redis_client, "q", count, timeout=20)
    assert len(events) == count
    assert {(e["directory"], e["filename"], e["event"]) for e in events} == {
        (str(d), "file.dat", "created") for d in dirs
    }
    assert redis_client.llen("q") == 0


# -- Redis -----------------------------------------------------------------------------


def test_redis_down_at_start_is_logged_and_held_events_are_delivered_once_it_starts(
    tmp_path, redis_server_factory, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    port = free_port()
    observer = start(observer_factory, tmp_path, port, {"in": section(watched)},
                     wait_ready=False)
    line = observer.wait_for_line("unreachable", timeout=10)
    assert str(port) in line
    touch(watched / "held.dat")
    assert observer.is_running()
    assert "dirobserver ready" not in observer.output()

    server = redis_server_factory(port=port)
    observer.wait_for_line("dirobserver ready", timeout=10)
    client = server.client()
    events = collect_until(client, "q",
                           lambda e: (e["filename"], e["event"]) == ("held.dat", "created"),
                           timeout=10)
    # The start-up listing may announce the file as well; nothing else comes.
    assert {e["filename"] for e in events} == {"held.dat"}
    assert observer.is_running()
    client.close()
