"""
Redis Streams end to end: the real daemon with C{queue_type = stream}, read
the way the README tells consumers to (a consumer group: C{XGROUP CREATE ...
MKSTREAM}, C{XREADGROUP}, C{XACK}, and C{XAUTOCLAIM} for a crashed worker).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.kit import wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def stream_config(tmp_path: Path, directory: Path, port: int, **section) -> Path:
    values = {"active": "true", "directory": str(directory), "queue": "events",
              "queue_type": "stream", "counter": "count", **section}
    return write_config(tmp_path, {"s": values}, {"redis_server": "127.0.0.1", "redis_port": port})


def read_group(client, consumer: str, count: int = 100, block: int = 100) -> list:
    reply = client.xreadgroup("workers", consumer, {"events": ">"}, count=count, block=block)
    return reply[0][1] if reply else []


def test_a_consumer_group_gets_every_file_and_a_crashed_workers_entries_are_claimed(
    tmp_path, redis_server, redis_client, observer_factory
) -> None:
    """
    Entries carry the JSON event's four fields; the counter counts them; a
    worker that read entries and died without XACK leaves them pending, and
    XAUTOCLAIM hands them to another worker.
    """
    directory = tmp_path / "in"
    directory.mkdir()
    (directory / "early.csv").write_bytes(b"x")
    redis_client.xgroup_create("events", "workers", id="$", mkstream=True)
    observer = observer_factory(stream_config(tmp_path, directory, redis_server.port)).start()
    observer.wait_for_line("1 files announced", timeout=10)  # the start-up listing
    for i in range(20):
        (directory / f"f{i:02d}.csv").write_bytes(b"x")
    assert wait_until(lambda: redis_client.xlen("events") >= 21, 10)

    crashed = read_group(redis_client, "crashed", count=5)  # read, never acknowledged
    assert len(crashed) == 5
    done: dict[str, dict[bytes, bytes]] = {}
    while True:
        entries = read_group(redis_client, "alive")
        if not entries:
            break
        for entry_id, fields in entries:
            done[fields[b"filename"].decode()] = fields
            redis_client.xack("events", "workers", entry_id)
    # XAUTOCLAIM takes entries idle for min_idle_time: wait until Redis says
    # the crashed worker's entries are that old.
    def crashed_idle() -> bool:
        pending = redis_client.xpending_range("events", "workers", min="-", max="+",
                                              count=100, consumername="crashed")
        return len(pending) == 5 and all(p["time_since_delivered"] >= 100 for p in pending)

    assert wait_until(crashed_idle, 10), "the crashed worker's entries never became idle"
    _next, claimed, _deleted = redis_client.xautoclaim("events", "workers", "alive",
                                                       min_idle_time=100, start_id="0-0")
    assert sorted(entry_id for entry_id, _ in claimed) == sorted(entry_id for entry_id, _ in crashed)
    for entry_id, fields in claimed:
        done[fields[b"filename"].decode()] = fields
        redis_client.xack("events", "workers", entry_id)

    assert set(done) == {"early.csv"} | {f"f{i:02d}.csv" for i in range(20)}
    assert done["early.csv"][b"event"] == b"exists"
    assert done["f00.csv"][b"event"] == b"created"
    assert set(done["f00.csv"]) == {b"directory", b"filename", b"event", b"event_timestamp"}
    assert done["f00.csv"][b"directory"] == str(directory).encode()
    assert abs(float(done["f00.csv"][b"event_timestamp"]) - time.time()) < 60
    assert redis_client.get("count") == b"21"
    assert redis_client.xpending("events", "workers")["pending"] == 0
    assert observer.is_running()


def test_poll_queue_limit_counts_the_backlog_of_the_consumer_groups(
    tmp_path, redis_server, redis_client, observer_factory
) -> None:
    """
    The stream holds 10 entries, 6 of them acknowledged by the only group:
    its backlog is 4 (not XLEN's 10), so poll_queue_limit = 15 leaves room
    for 11 of the 30 files present.
    """
    for i in range(10):
        redis_client.xadd("events", {"filename": f"old{i}"})
    redis_client.xgroup_create("events", "workers", id="0")
    entries = read_group(redis_client, "w", count=10)
    redis_client.xack("events", "workers", *[entry_id for entry_id, _ in entries[:6]])
    directory = tmp_path / "in"
    directory.mkdir()
    for i in range(30):
        (directory / f"f{i:02d}").write_bytes(b"x")
    config = stream_config(tmp_path, directory, redis_server.port, poll_queue_limit=15)
    observer = observer_factory(config).start()
    line = observer.wait_for_line("stopped at poll_queue_limit", timeout=10)
    assert "11 of 30 files announced" in line, line
    assert wait_until(lambda: redis_client.xlen("events") == 21, 5)
