"""
Failover end to end: the real daemon, configured with three real Sentinels,
a master and a replica (L{sentinel_helpers.SentinelSet}); a consumer that
always reads from the node the Sentinels name as the master.

A burst of files is created with a failover in the middle, manual
(C{SENTINEL FAILOVER}) or automatic (the master SIGKILLed): every file must
be announced.  Acknowledged writes that asynchronous replication lost on the
way are announced again by the listing the observer makes after it switched
to the new master.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit import wait_until, write_config
from tests.kit.sentinel import MASTER_NAME, MasterConsumer, SentinelSet

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

BURST = 1500


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    started = SentinelSet(tmp_path / "set").start()
    try:
        yield started
    finally:
        started.cleanup()


def sentinel_config(tmp_path: Path, directory: Path, sentinel_set: SentinelSet, **common) -> Path:
    return write_config(
        tmp_path,
        {"s": {"active": "true", "directory": str(directory), "queue": "q", "counter": "c"}},
        {"redis_sentinels": sentinel_set.addresses, "redis_sentinel_master": MASTER_NAME,
         "timeout": 2, **common},
    )


def burst(directory: Path, count: int, halfway: threading.Event, pause: float = 0.001) -> set[str]:
    """Create C{count} files one by one; C{halfway} is set in the middle."""
    names = set()
    for i in range(count):
        name = f"f{i:05d}"
        (directory / name).write_bytes(b"x")
        names.add(name)
        if i == count // 2:
            halfway.set()
        time.sleep(pause)  # a burst that lasts long enough for the action to land in it
    return names


def run_burst_with(action, directory: Path, count: int = BURST) -> set[str]:
    """The burst in a thread, C{action()} in this one when it is half done."""
    halfway = threading.Event()
    result: dict[str, set[str]] = {}
    thread = threading.Thread(target=lambda: result.setdefault("names", burst(directory, count, halfway)))
    thread.start()
    assert halfway.wait(30)
    action()
    thread.join(60)
    return result["names"]


@pytest.mark.parametrize("how", ["manual", "sigkill"])
def test_a_failover_in_the_middle_of_a_burst_loses_no_file(
    how, tmp_path, sentinel_set, observer_factory
) -> None:
    """
    C{SENTINEL FAILOVER}, or the master SIGKILLed (the Sentinels fail over
    after down-after-milliseconds): the observer follows the master the
    Sentinels name, lists every directory after the switch, and every file
    of the burst is announced on the new master.
    """
    directory = tmp_path / "in"
    directory.mkdir()
    old = sentinel_set.master()
    observer = observer_factory(sentinel_config(tmp_path, directory, sentinel_set)).start()
    assert f"127.0.0.1:{old.port} (master {MASTER_NAME} per Sentinel)" in observer.output()
    consumer = MasterConsumer(sentinel_set, "q").start()
    try:
        mark = observer.mark()
        if how == "manual":
            names = run_burst_with(
                lambda: sentinel_set.sentinel_client().execute_command(
                    "SENTINEL", "FAILOVER", MASTER_NAME), directory)
        else:
            names = run_burst_with(lambda: old.proc.send_signal(signal.SIGKILL), directory)
        assert sentinel_set.switched_from(old.port) or _wait_switch(sentinel_set, old.port)
        new = sentinel_set.master()
        observer.wait_for_line(f"Redis at 127.0.0.1:{new.port} (master {MASTER_NAME} per Sentinel) "
                               "answers again", timeout=15, since=mark)
        observer.wait_for_line("listing every directory", timeout=5, since=mark)
        missing = consumer.wait_for(names, timeout=30)
        assert not missing, f"{len(missing)} files never announced after a {how} failover: " \
                            f"{sorted(missing)[:10]}"
    finally:
        consumer.stop()
    assert observer.is_running()
    if how == "manual":
        # The switch was announced (+switch-master) or noticed (the old master
        # refused a write, or its clients were closed): one line says which.
        assert any(line for line in observer.lines[mark:]
                   if "not the master any more" in line or "refused a write as a replica" in line
                   or "Lost the connection" in line), observer.output()


def _wait_switch(sentinel_set: SentinelSet, old_port: int) -> bool:
    return wait_until(lambda: sentinel_set.switched_from(old_port), 20, interval=0.1)
