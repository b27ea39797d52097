"""
Reload on SIGHUP, with the real daemon, a real Redis and real directories.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from tests.kit import drain, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def _config(tmp_path: Path, port: int, sections: dict) -> Path:
    return write_config(tmp_path, sections, {"redis_server": "127.0.0.1", "redis_port": port})


def test_sighup_adds_removes_and_changes_sections_while_others_lose_nothing(
    tmp_path, redis_server, redis_client, observer_factory
):
    """
    A new section is watched and its present files listed; a removed one is
    no longer watched; a changed filter applies; the unchanged section keeps
    receiving files throughout, loses none and is not listed again.
    """
    dirs = {name: tmp_path / name for name in ("keep", "gone", "filt", "new")}
    for d in dirs.values():
        d.mkdir()
    keep = {"active": "true", "directory": dirs["keep"], "queue": "q:keep"}
    gone = {"active": "true", "directory": dirs["gone"], "queue": "q:gone"}
    filt = {"active": "true", "directory": dirs["filt"], "queue": "q:filt", "only": r"^.*\.csv$"}
    new = {"active": "true", "directory": dirs["new"], "queue": "q:new"}
    path = _config(tmp_path, redis_server.port, {"keep": keep, "gone": gone, "filt": filt})
    (dirs["new"] / "present-before").touch()
    observer = observer_factory(path).start()
    observer.wait_for_line(f"Listed {dirs['keep']}:", timeout=10)

    written: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            name = f"k{i:05d}"
            (dirs["keep"] / name).touch()
            written.append(name)
            i += 1
            time.sleep(0.002)  # a steady producer, so files keep coming across the reload

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        # The producer's files are being announced before the reload...
        assert wait_until(lambda: redis_client.llen("q:keep") >= 50, 10), \
            "the unchanged section announced nothing before the reload"
        _config(tmp_path, redis_server.port,
                {"keep": keep, "filt": {**filt, "only": r"^.*\.txt$"}, "new": new})
        mark = observer.mark()
        observer.signal(signal.SIGHUP)
        line = observer.wait_for_line("Configuration reloaded", timeout=10, since=mark)
        assert "added [new]" in line and "removed [gone]" in line and "changed [filt]" in line, line
        assert "1 sections unchanged" in line, line
        # ... and files made after it are announced too.
        after = len(written)
        assert wait_until(lambda: redis_client.llen("q:keep") >= after + 50, 10), \
            "the unchanged section stopped announcing after the reload"
    finally:
        stop.set()
        producer.join()

    # The new section's present file was listed.
    listed = drain(redis_client, "q:new", 1, timeout=10)
    assert [(e["filename"], e["event"]) for e in listed] == [("present-before", "exists")]
    # The changed filter applies; the removed section is no longer watched.
    # b.txt comes last: its event is the witness that what came before it
    # (a.csv, the removed section's file) was seen, had it to be announced.
    (dirs["gone"] / "after-removal").touch()
    (dirs["filt"] / "a.csv").touch()
    (dirs["filt"] / "b.txt").touch()
    filt_events: list[dict] = []

    def got_b() -> bool:
        filt_events.extend(drain(redis_client, "q:filt", 100, timeout=0))
        return any(e["filename"] == "b.txt" for e in filt_events)

    assert wait_until(got_b, 10), f"b.txt never announced: {filt_events}"
    assert [e["filename"] for e in filt_events if e["event"] == "created"] == ["b.txt"]
    assert redis_client.llen("q:gone") == 0
    # The unchanged section lost nothing and was not listed again.
    events = drain(redis_client, "q:keep", len(written), timeout=15)
    assert sorted(e["filename"] for e in events) == sorted(written)
    assert {e["event"] for e in events} == {"created"}
    assert observer.is_running()


def test_sighup_with_a_bad_configuration_keeps_the_old_one(
    tmp_path, redis_server, redis_client, observer_factory
):
    """A bad file on reload: one line naming the problem; the old configuration runs on."""
    watched = tmp_path / "in"
    watched.mkdir()
    path = _config(tmp_path, redis_server.port,
                   {"s": {"active": "true", "directory": watched, "queue": "q"}})
    observer = observer_factory(path).start()
    text = path.read_text()
    path.write_text(text.replace("queue = q", "queue = q\nforced_poll = soon"))
    mark = observer.mark()
    observer.signal(signal.SIGHUP)
    line = observer.wait_for_line("Reload refused", timeout=10, since=mark)
    assert "forced_poll" in line and "[s]" in line and str(path) in line, line
    (watched / "still-watched").touch()
    events = drain(redis_client, "q", 1, timeout=5)
    assert [e["filename"] for e in events] == ["still-watched"]
    assert "Traceback" not in observer.output()
    # Two signals in a row are merged into one reload, or two: never a crash.
    path.write_text(text)
    observer.signal(signal.SIGHUP)
    observer.signal(signal.SIGHUP)
    observer.wait_for_line("Configuration reloaded", timeout=10, since=mark)
    assert observer.is_running()


def test_sighup_with_an_unknown_key_is_refused_and_the_directory_stays_watched(
    tmp_path, redis_server, redis_client, observer_factory
):
    """C{recursiv = true} at reload: refused in one line with the near miss; the
    running configuration (a flat watch) goes on."""
    watched = tmp_path / "in"
    watched.mkdir()
    path = _config(tmp_path, redis_server.port,
                   {"s": {"active": "true", "directory": watched, "queue": "q"}})
    observer = observer_factory(path).start()
    path.write_text(path.read_text().replace("queue = q", "queue = q\nrecursiv = true"))
    mark = observer.mark()
    observer.signal(signal.SIGHUP)
    line = observer.wait_for_line("Reload refused", timeout=10, since=mark)
    assert "the running configuration is kept" in line, line
    assert f"{path}: [s] unknown key 'recursiv' (did you mean 'recursive'?)" in line, line
    (watched / "still-watched").touch()
    events = drain(redis_client, "q", 1, timeout=5)
    assert [e["filename"] for e in events] == ["still-watched"]
    assert "Configuration reloaded" not in observer.output()
    assert "Traceback" not in observer.output()
    assert observer.is_running()
