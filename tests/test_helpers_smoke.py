"""
Smoke tests of the test infrastructure itself (helpers.py, conftest.py) and
of the embedded Redis service, so that a broken harness shows up as such
rather than as puzzling failures in the real tests.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import valkey

from tests.kit import (
    REPO_ROOT,
    Observer,
    RedisServer,
    drain,
    free_port,
    wait_until,
    write_config,
)

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def test_redis_server_answers_ping(redis_server: RedisServer, redis_client) -> None:
    assert redis_server.host == "127.0.0.1"
    assert redis_server.is_running()
    assert redis_server.ping()
    assert redis_client.ping() is True


def test_lpush_rpop_round_trip_oldest_first(redis_client) -> None:
    for n in range(3):
        redis_client.lpush("q", json.dumps({"n": n}))
    assert drain(redis_client, "q", 3, timeout=2) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert redis_client.llen("q") == 0


def test_drain_returns_what_it_has_at_timeout(redis_client) -> None:
    redis_client.lpush("q", json.dumps({"only": True}))
    started = time.monotonic()
    assert drain(redis_client, "q", 5, timeout=0.3) == [{"only": True}]
    assert 0.3 <= time.monotonic() - started < 3


def test_kill_and_restart_on_same_port(redis_server: RedisServer) -> None:
    port = redis_server.port
    client = redis_server.client(socket_timeout=2)
    client.set("k", b"v")
    redis_server.kill()
    assert not redis_server.is_running()
    assert not redis_server.ping()
    redis_server.restart()
    assert redis_server.port == port
    # A scratch server: nothing survives a restart.
    assert redis_server.client().get("k") is None
    redis_server.stop()
    assert not redis_server.is_running()
    redis_server.restart()
    assert redis_server.ping()


def test_pause_and_resume(redis_server: RedisServer) -> None:
    client = redis_server.client(socket_timeout=0.3)
    redis_server.pause()
    # Connected, but nothing answers within the client's socket timeout.
    with pytest.raises(valkey.TimeoutError):
        client.ping()
    redis_server.resume()
    assert wait_until(redis_server.ping, timeout=5)


def test_stop_while_paused(redis_server: RedisServer) -> None:
    redis_server.pause()
    started = time.monotonic()
    redis_server.stop()
    assert not redis_server.is_running()
    assert time.monotonic() - started < 5


def test_unix_socket(redis_server_factory) -> None:
    # Unix socket paths are limited to ~107 bytes: keep it short.
    with tempfile.TemporaryDirectory(prefix="vk") as short:
        path = Path(short) / "s"
        server = redis_server_factory(unix_socket=path)
        assert path.exists()
        import valkey

        client = valkey.Valkey(unix_socket_path=str(path))
        assert client.ping() is True
        client.close()
        server.stop()


def test_wait_until() -> None:
    deadline = time.monotonic() + 0.1
    assert wait_until(lambda: time.monotonic() > deadline, timeout=2)
    assert not wait_until(lambda: False, timeout=0.1)


def test_write_config_is_parseable(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "stage1": {"directory": str(tmp_path / "in"), "queue": "q1"},
            "stage2": {"directory": str(tmp_path / "out"), "queue": "q2"},
        },
        common={"redis_port": "6379", "note": "two\nlines"},
    )
    assert path == tmp_path / "directory_observer.ini"
    parser = configparser.RawConfigParser()
    assert parser.read(path) == [str(path)]
    assert parser.sections() == ["common", "stage1:common", "stage2:common"]
    assert parser.get("stage1:common", "queue") == "q1"
    assert parser.get("stage2:common", "directory") == str(tmp_path / "out")
    assert parser.get("common", "redis_port") == "6379"
    assert parser.get("common", "note") == "two\nlines"


def test_write_config_without_common(tmp_path: Path) -> None:
    parser = configparser.RawConfigParser()
    parser.read(write_config(tmp_path, {"a": {"x": 1}}))
    assert parser.sections() == ["common", "a:common"]
    assert parser.items("common") == []


def test_observer_reports_early_exit_with_output(tmp_path: Path, observer_factory) -> None:
    # Whatever the plugin's state, a missing config makes twistd exit at once:
    # the harness must notice and include the output instead of hanging.
    observer: Observer = observer_factory(tmp_path / "does-not-exist.ini")
    with pytest.raises(RuntimeError) as caught:
        observer.start(timeout=60)
    assert "twistd exited" in str(caught.value)
    assert observer.output().strip()
    assert observer.returncode not in (None, 0)


def test_find_server_binary() -> None:
    from dirobserver.app.embedded_redis import find_server_binary

    path = find_server_binary()
    assert os.access(path, os.X_OK)
    assert "valkey-server" in path


_EMBEDDED_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from twisted.internet import reactor, defer
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from dirobserver.app.embedded_redis import EmbeddedRedis

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    port = int(sys.argv[1])

    @defer.inlineCallbacks
    def main():
        try:
            service = EmbeddedRedis("127.0.0.1", port, reactor)
            service.startService()
            yield service.when_ready()
            print("READY pid=%d" % service.pid, flush=True)
            # A second one finds the port taken and starts nothing.
            again = EmbeddedRedis("127.0.0.1", port, reactor)
            again.startService()
            yield again.when_ready()
            print("SECOND pid=%s" % again.pid, flush=True)
            again.stopService()
            pid = service.pid
            yield service.stopService()
            print("STOPPED alive=%s" % os.path.exists("/proc/%d" % pid), flush=True)
        finally:
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    """
)


def test_embedded_redis_service(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-c", _EMBEDDED_SCRIPT, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"started at 127.0.0.1:{port} (pid" in out, out
    assert "READY pid=" in out, out
    assert "not starting the embedded server" in out, out
    assert "SECOND pid=None" in out, out
    assert "STOPPED alive=False" in out, out
    assert "exited unexpectedly" not in out, out
