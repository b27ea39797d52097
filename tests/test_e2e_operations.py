"""
Operations with the real daemon: /metrics and the health endpoints, systemd
notifications, log level and JSON logs, and a Redis that wants a password.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.kit import (
    command_calls,
    connections_received,
    drain,
    free_port,
    metric_samples,
    wait_until,
    write_config,
)

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def _config(tmp_path: Path, port: int, **common) -> tuple[Path, Path]:
    watched = tmp_path / "in"
    watched.mkdir(exist_ok=True)
    path = write_config(
        tmp_path, {"stage": {"active": "true", "directory": watched, "queue": "q"}},
        {"redis_server": "127.0.0.1", "redis_port": port, **common},
    )
    return path, watched


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()


def _answers(url: str) -> int | None:
    """The HTTP status of C{url}, None while nothing listens."""
    try:
        return _get(url)[0]
    except OSError:
        return None



def test_metrics_and_readiness_of_the_real_daemon(tmp_path, redis_server, redis_client,
                                                  observer_factory):
    """Counters move with real events; /readyz turns 503 with the reason when Redis dies."""
    path, watched = _config(tmp_path, redis_server.port)
    (watched / "present").touch()
    port = free_port()
    observer = observer_factory(path, extra_args=[f"--metrics=tcp:{port}:interface=127.0.0.1"])
    observer.start()
    observer.wait_for_line(f"Listed {watched}:", timeout=10)
    base = f"http://127.0.0.1:{port}"
    for name in ("a", "b", "c"):
        (watched / name).touch()
    assert len(drain(redis_client, "q", 4, timeout=5)) == 4

    def scraped() -> dict:
        status, text = _get(f"{base}/metrics")
        assert status == 200
        return metric_samples(text)

    assert wait_until(lambda: scraped().get(
        ("dirobserver_events_total", (("event", "created"), ("section", "stage")))) == 3, 5)
    samples = scraped()
    assert samples[("dirobserver_events_total", (("event", "exists"), ("section", "stage")))] == 1
    assert samples[("dirobserver_redis_up", ())] == 1
    assert samples[("dirobserver_directories", (("state", "watched"),))] == 1
    assert samples[("dirobserver_directories", (("state", "missing"),))] == 0
    assert samples[("dirobserver_listings_total", (("section", "stage"),))] == 1
    assert samples[("dirobserver_delivery_seconds_count", ())] == 4
    assert samples[("dirobserver_listing_seconds_count", ())] == 1
    assert samples[("dirobserver_held_events", ())] == 0
    assert any(name == "dirobserver_build_info" for name, _ in samples)
    assert _get(f"{base}/livez") == (200, '{"alive": true, "problems": []}')
    assert _get(f"{base}/readyz") == (200, '{"ready": true, "problems": []}')

    redis_server.kill()
    assert wait_until(lambda: _get(f"{base}/readyz")[0] == 503, 10)
    status, body = _get(f"{base}/readyz")
    assert "\n" not in body, body
    answer = json.loads(body)
    assert answer["ready"] is False and "Redis at 127.0.0.1" in answer["problems"][0], answer
    assert scraped()[("dirobserver_redis_up", ())] == 0
    status, body = _get(f"{base}/livez")
    answer = json.loads(body)
    assert status == 200 and answer["alive"] is True, body  # alive, only not ready
    assert "Redis at 127.0.0.1" in answer["problems"][0], answer  # yet the problem shows
    assert _get(f"{base}/nothing-here")[0] == 404


def test_systemd_notifications(tmp_path, redis_server, observer_factory):
    """READY=1 once ready, WATCHDOG=1 twice a second, STOPPING=1 on SIGTERM."""
    path, _watched = _config(tmp_path, redis_server.port, monitor_inactivitytimeout=5)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    received: list[tuple[float, str]] = []

    def collect(until: float) -> None:
        while time.monotonic() < until:
            try:
                received.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                pass

    try:
        observer = observer_factory(
            path, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
        observer.start()
        start = time.monotonic()
        collect(start + 3)
        ready = [m for _, m in received if "READY=1" in m.split("\n")]
        assert ready and "STATUS=Watching 1 of 1 directory; Redis connected" in ready[0], received
        beats = [t for t, m in received if m == "WATCHDOG=1"]
        # Every half second: about five in 2.5 s (the first comes after half a second).
        assert 4 <= len([t for t in beats if t >= start + 0.5]) <= 7, received
        observer.signal(signal.SIGHUP)
        collect(time.monotonic() + 1)
        messages = [m for _, m in received]
        reloading = [i for i, m in enumerate(messages) if m.startswith("RELOADING=1")]
        assert reloading and "MONOTONIC_USEC=" in messages[reloading[0]], messages
        assert any(m.startswith("READY=1") for m in messages[reloading[0]:]), messages
        observer.terminate()
        assert observer.wait() == 0
        collect(time.monotonic() + 0.5)
        assert "STOPPING=1" in [m for _, m in received], received
    finally:
        sock.close()


def test_json_logs_parse_line_by_line(tmp_path, redis_server, observer_factory):
    path, _watched = _config(tmp_path, redis_server.port)
    observer = observer_factory(path, extra_args=["--log-format=json", "--log-level=info"])
    observer.start()
    observer.terminate()
    assert observer.wait() == 0
    lines = [line for line in observer.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "namespace", "message"} <= set(records[0])
    messages = [r["message"] for r in records]
    assert any(m.startswith("dirobserver ready") for m in messages)
    assert any("twistd" in m and "starting up" in m for m in messages)  # twistd's own lines too
    assert {r["level"] for r in records} <= {"info", "warn", "error", "critical"}


def test_log_level_warn_prints_no_info_line(tmp_path, redis_server, redis_client,
                                            observer_factory):
    path, watched = _config(tmp_path, redis_server.port)
    port = free_port()
    observer = observer_factory(
        path, extra_args=["--log-level=warn", f"--metrics=tcp:{port}:interface=127.0.0.1"]
    )
    observer.start(wait_ready=False)
    assert wait_until(lambda: os.path.exists(watched), 1)
    # No "ready" line at this level: /readyz says when the daemon is ready.
    assert wait_until(lambda: _answers(f"http://127.0.0.1:{port}/readyz") == 200, 15), \
        "the daemon never became ready"
    (watched / "f").touch()
    assert len(drain(redis_client, "q", 1, timeout=5)) == 1
    observer.terminate()
    assert observer.wait() == 0
    assert observer.output().strip() == "", observer.output()


def test_redis_that_wants_a_password_is_never_ready(tmp_path, redis_server, observer_factory):
    """No password configured for a requirepass server: one line, never 'ready', /readyz says why."""
    redis_server.client().config_set("requirepass", "s3cret")
    path, _watched = _config(tmp_path, redis_server.port)
    port = free_port()
    observer = observer_factory(path, extra_args=[f"--metrics=tcp:{port}:interface=127.0.0.1"])
    observer.start(wait_ready=False)
    observer.wait_for_line("password", timeout=10)
    # Several more attempts refused for the password (each is a connection
    # the server counts; ours is one, kept open), and still one line and no
    # "ready".
    admin = redis_server.client(password="s3cret")
    connections = connections_received(admin)
    assert wait_until(lambda: connections_received(admin) >= connections + 3, 20), \
        "the daemon did not try again"
    output = observer.output()
    assert "dirobserver ready" not in output
    assert sum("password" in line for line in output.splitlines()) == 1, output
    status, body = _get(f"http://127.0.0.1:{port}/readyz")
    assert status == 503 and "password" in json.loads(body)["problems"][0], body


def test_a_failing_llen_is_one_line_per_cause_not_one_per_listing(
    tmp_path, redis_server, redis_client, observer_factory
):
    """LLEN on a key of the wrong type, with a listing every 0.3 s: one warning, then one 'again'."""
    redis_client.set("q", "not a list")
    watched = tmp_path / "in"
    watched.mkdir()
    (watched / "present").touch()
    path = write_config(
        tmp_path, {"s": {"active": "true", "directory": watched, "queue": "q", "forced_poll": 0.3}},
        {"redis_server": "127.0.0.1", "redis_port": redis_server.port},
    )
    observer = observer_factory(path).start()
    observer.wait_for_line("LLEN q failed", timeout=10)
    # Five more listings, each an LLEN that fails, and still one warning.
    calls = command_calls(redis_client, "llen")
    assert wait_until(lambda: command_calls(redis_client, "llen") >= calls + 5, 20), \
        "no more listings after the first failure"
    assert sum("LLEN q failed" in line for line in observer.output().splitlines()) == 1
    redis_client.delete("q")
    line = observer.wait_for_line("LLEN q answers again", timeout=10)
    assert "times over" in line, line
    assert any(e["filename"] == "present" for e in drain(redis_client, "q", 1, timeout=5))


def test_readyz_is_200_with_a_missing_directory_and_names_it(tmp_path, redis_server, observer_factory):
    """Events flow, so the daemon is ready; but both bodies name the directory
    that does not exist, and /readyz stays 200 once it appears (and is watched)."""
    watched, missing = tmp_path / "in", tmp_path / "not-yet"
    watched.mkdir()
    path = write_config(
        tmp_path, {"here": {"active": "true", "directory": watched, "queue": "q"},
                   "gone": {"active": "true", "directory": missing, "queue": "q2"}},
        {"redis_server": "127.0.0.1", "redis_port": redis_server.port},
    )
    port = free_port()
    observer = observer_factory(path, extra_args=[f"--metrics=tcp:{port}:interface=127.0.0.1"])
    observer.start()
    base = f"http://127.0.0.1:{port}"
    for endpoint, verdict in (("readyz", "ready"), ("livez", "alive")):
        status, body = _get(f"{base}/{endpoint}")
        assert (status, json.loads(body)) == (200, {verdict: True, "problems": [f"[gone] {missing} is missing"]})
    missing.mkdir()
    assert wait_until(lambda: _get(f"{base}/readyz") == (200, '{"ready": true, "problems": []}'), 10)


def test_metrics_port_in_use_stops_the_start_with_71(tmp_path, redis_server, observer_factory):
    """--metrics on a port another daemon's endpoint holds: one line, nothing
    watched, exit status 71 (a resource in use: a supervisor tries again)."""
    path, _watched = _config(tmp_path, redis_server.port)
    port = free_port()
    endpoint = f"--metrics=tcp:{port}:interface=127.0.0.1"
    first = observer_factory(path, extra_args=[endpoint])
    first.start()
    second = observer_factory(path, extra_args=[endpoint])
    second.start(wait_ready=False)
    status = second.wait(20)
    output = second.output()
    assert status == 71, output
    refusals = [line for line in output.splitlines() if "cannot serve /metrics" in line]
    assert len(refusals) == 1 and f"tcp:{port}:interface=127.0.0.1" in refusals[0], output
    assert "in use" in refusals[0] and "stopping" in refusals[0], output
    assert "Traceback" not in output and "Watching" not in output, output
    assert _get(f"http://127.0.0.1:{port}/livez")[0] == 200  # the first one's, untouched
