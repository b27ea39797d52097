"""
The commands an operator runs before the daemon itself, with the real
``twistd dirobserver``: ``--version``, ``--print-sample-config`` and
``--check`` (which must touch nothing: no Redis, no file, no daemon).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import dirobserver
import twisted
from tests.kit.config import write_config
from tests.kit.processes import REPO_ROOT, free_port, twistd_path
from tests.kit.waiting import wait_until

#: Every test here runs twistd or a server (see `make unit`).
pytestmark = pytest.mark.process

SAMPLE = REPO_ROOT / "directory_observer.ini"


def twistd(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``twistd dirobserver ARGS`` as an operator would (no ``-n``): status, stdout, stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run([str(twistd_path()), "dirobserver", *args], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30, cwd=cwd, env=env)
    return result.returncode, result.stdout, result.stderr


def test_version_prints_dirobserver_twisted_and_txredisapi_versions(tmp_path):
    from importlib import metadata

    status, out, err = twistd(["--version"], tmp_path)
    assert (status, err) == (0, ""), err
    assert out.splitlines() == [f"dirobserver {dirobserver.__version__}",
                                f"Twisted {twisted.__version__}",
                                f"txredisapi {metadata.version('txredisapi')}"]
    assert os.listdir(tmp_path) == []


def test_the_version_is_written_once_and_setup_reads_it():
    """setup.py takes dirobserver/__init__.py's __version__, not a literal of its own."""
    setup = (REPO_ROOT / "setup.py").read_text()
    assert "version=_version()" in setup
    assert dirobserver.__version__ not in setup


def test_the_start_up_line_carries_the_version(tmp_path, redis_server, observer_factory):
    watched = tmp_path / "in"
    watched.mkdir()
    config = write_config(tmp_path, {"a": {"active": "true", "directory": watched, "queue": "q"}},
                          {"redis_server": "127.0.0.1", "redis_port": redis_server.port})
    observer = observer_factory(config).start()
    line = observer.wait_for_line("starting:", timeout=1)
    assert f"dirobserver {dirobserver.__version__} starting: 1 directory," in line, line


def test_print_sample_config_prints_the_repository_sample(tmp_path):
    status, out, err = twistd(["--print-sample-config"], tmp_path)
    assert (status, err) == (0, ""), err
    assert out == SAMPLE.read_text(encoding="utf-8")


def test_the_packaged_sample_is_the_repository_sample():
    """dirobserver/app/sample.ini ships with the package: it must not drift from the top-level file."""
    packaged = REPO_ROOT / "dirobserver" / "app" / "sample.ini"
    assert packaged.read_text(encoding="utf-8") == SAMPLE.read_text(encoding="utf-8"), (
        "cp directory_observer.ini dirobserver/app/sample.ini")


def _redis_is_untouched(redis_server, connections_before: int) -> None:
    client = redis_server.client()
    try:
        info = client.info("stats")
        # Our own client is the one connection more.
        assert info["total_connections_received"] == connections_before + 1, info
        assert client.dbsize() == 0
    finally:
        client.close()


def _connections(redis_server) -> int:
    client = redis_server.client()
    try:
        return int(client.info("stats")["total_connections_received"])
    finally:
        client.close()


def test_check_of_a_good_file_says_each_section_and_exits_0_touching_nothing(tmp_path, redis_server):
    watched = tmp_path / "in"
    watched.mkdir()
    config = write_config(
        tmp_path,
        {"a": {"active": "true", "directory": watched, "queue": "q:a", "counter": "c:a"},
         "later": {"active": "true", "directory": tmp_path / "not-yet", "queue": "q:b",
                   "queue_type": "stream"},
         "off": {"active": "false", "directory": tmp_path / "off", "queue": "q:c"}},
        {"redis_server": "127.0.0.1", "redis_port": redis_server.port},
    )
    before = _connections(redis_server)
    files_before = sorted(os.listdir(tmp_path))
    status, out, err = twistd([f"--config={config}", "--check"], tmp_path)
    assert (status, err) == (0, ""), out + err
    lines = out.splitlines()
    assert lines[0].startswith(f"[a] ok: {watched} on ") and ": inotify; events to list q:a" in lines[0]
    assert lines[1] == (f"[later] warning: {tmp_path / 'not-yet'} does not exist yet (it is watched "
                        "as soon as it appears); events to stream q:b")
    assert lines[2] == f"Redis at 127.0.0.1:{redis_server.port} (not contacted)"
    assert lines[3] == f"dirobserver: {config}: good: 2 active sections, 0 problems, 1 warnings"
    assert len(lines) == 4, out
    # Nothing created: no log file, no pidfile, no directory; no daemon left.
    assert sorted(os.listdir(tmp_path)) == files_before
    _redis_is_untouched(redis_server, before)


def test_check_of_a_bad_file_names_each_problem_and_exits_78_touching_nothing(tmp_path, redis_server):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    watched = tmp_path / "in"
    watched.mkdir()
    config = write_config(
        tmp_path,
        {"a": {"active": "true", "directory": watched, "queue": "q:a", "watch_mode": "poll",
               "poll_interval": 5},
         "b": {"active": "true", "directory": not_a_dir, "queue": "q:b"}},
        {"redis_server": "127.0.0.1", "redis_port": redis_server.port},
    )
    before = _connections(redis_server)
    files_before = sorted(os.listdir(tmp_path))
    status, out, err = twistd([f"--config={config}", "--check"], tmp_path)
    assert (status, err) == (78, ""), out + err
    lines = out.splitlines()
    assert ": polled every 5 s; events to list q:a" in lines[0], lines[0]
    assert lines[1] == f"[b] problem: {not_a_dir} is not a directory; events to list q:b"
    assert lines[-1] == f"dirobserver: {config}: bad: 2 active sections, 1 problems, 0 warnings"

    # A file that cannot be read at all: the one line it would stop a start with.
    config.write_text(config.read_text().replace("queue = q:a", "queue = q:a\nrecursiv = true"))
    status, out, err = twistd([f"--config={config}", "--check"], tmp_path)
    assert (status, err) == (78, ""), out + err
    assert out.splitlines() == [
        f"dirobserver: {config}: [a] unknown key 'recursiv' (did you mean 'recursive'?)",
        f"dirobserver: {config}: bad: 1 problem",
    ]
    assert sorted(os.listdir(tmp_path)) == files_before
    _redis_is_untouched(redis_server, before)


def test_check_reads_the_tls_files_without_connecting(tmp_path):
    watched = tmp_path / "in"
    watched.mkdir()
    config = write_config(tmp_path, {"a": {"active": "true", "directory": watched, "queue": "q"}},
                          {"redis_server": "127.0.0.1", "redis_port": 6379, "redis_tls": "true",
                           "redis_tls_ca": tmp_path / "missing-ca.pem"})
    status, out, err = twistd([f"--config={config}", "--check"], tmp_path)
    assert status == 78, out + err
    problem = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert len(problem) == 1 and "missing-ca.pem" in problem[0], out


def test_stopping_an_embedded_redis_that_still_holds_events_says_they_are_lost(tmp_path, observer_factory):
    """It keeps nothing on disk: one line at stop counts what its queues held
    (a list and a stream); a stop with empty queues says nothing of the kind."""
    import valkey

    port = free_port()
    lists, streams = tmp_path / "lists", tmp_path / "streams"
    lists.mkdir()
    streams.mkdir()
    config = write_config(
        tmp_path,
        {"l": {"active": "true", "directory": lists, "queue": "q:l"},
         "s": {"active": "true", "directory": streams, "queue": "q:s", "queue_type": "stream"}},
        {"redis_server": "127.0.0.1", "redis_port": port},
    )
    observer = observer_factory(config, extra_args=["--embedded-redis"]).start(timeout=20)
    # After the listings at start, each file is announced once.
    observer.wait_for_line(f"Listed {lists}:", timeout=10)
    observer.wait_for_line(f"Listed {streams}:", timeout=10)
    for name in ("a", "b"):
        (lists / name).write_bytes(b"")
    (streams / "c").write_bytes(b"")
    client = valkey.Valkey(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        assert wait_until(lambda: client.llen("q:l") == 2 and client.xlen("q:s") == 1, timeout=10)
    finally:
        client.close()
    observer.terminate()
    assert observer.wait(20) == 0, observer.output()
    line = observer.wait_for_line("Embedded Redis stopping", timeout=1)
    assert "with 3 events still queued (q:l: 2, q:s: 1): they are lost" in line, line
    assert "not for servers" in line, line

    # The same daemon, nothing left in its queues: no such line.
    for path in (lists / "a", lists / "b", streams / "c"):
        path.unlink()
    again = observer_factory(config, extra_args=["--embedded-redis"]).start(timeout=20)
    again.terminate()
    assert again.wait(20) == 0, again.output()
    assert "dirobserver stopped" in again.output()
    assert "Embedded Redis stopping" not in again.output()
