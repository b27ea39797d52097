"""
End-to-end configuration handling: the real ``twistd -n dirobserver
--config=...`` command.

A configuration the daemon cannot use must stop it before it starts, with a
non-zero exit status and one line that names the file, the section and the
key (where there is one) — never a traceback.  An unknown key is such a
configuration: a typo would silently change what runs.  A merely suspicious
one (two sections on one directory) is a warning, and the daemon runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kit import REPO_ROOT, drain, free_port, section, twistd_path, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def run_twistd(args: list[str], cwd: Path, timeout: float = 20) -> tuple[int, str]:
    """Run ``twistd -n --pidfile= dirobserver ARGS``; return (status, all output)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [str(twistd_path()), "-n", "--pidfile=", "dirobserver", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
    return result.returncode, result.stdout + result.stderr


def assert_one_line_error(status: int, output: str, *needles: str) -> str:
    """Non-zero status, exactly one line of output, no traceback, every needle in it."""
    assert status != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


COMMON = {"redis_server": "127.0.0.1", "redis_port": 6379}


# Each case: (name, builder) where builder(tmp_path) -> (config path, needles).
def _missing_file(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "absent.ini"
    return path, [str(path)]


def _directory_as_path(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "conf.d"
    path.mkdir()
    return path, [str(path)]


def _syntax_error(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "directory_observer.ini"
    path.write_text(
        "[common]\nredis_port = 6379\n\n[a:common]\nactive = true\nthis line has no equals sign\n"
    )
    return path, [str(path), "line 6"]


def _write(tmp: Path, sections: dict[str, dict[str, Any]], common: dict | None = None) -> Path:
    return write_config(tmp, sections, common=COMMON if common is None else common)


def _invalid_regex(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": section(tmp / "in", ignore=r"^ok$;(unclosed")})
    return path, [str(path), "[a]", "ignore"]


def _not_a_number(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": section(tmp / "in", forced_poll="soon")})
    return path, [str(path), "[a]", "forced_poll", "soon"]


def _port_not_a_number(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": section(tmp / "in")}, {"redis_server": "127.0.0.1", "redis_port": "eighty"})
    return path, [str(path), "[a]", "redis_port", "eighty"]


def _limit_not_an_integer(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": section(tmp / "in", poll_queue_limit="1.5")})
    return path, [str(path), "[a]", "poll_queue_limit"]


def _no_directory(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": {"active": "true", "queue": "q"}})
    return path, [str(path), "[a]", "directory"]


def _no_queue(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": {"active": "true", "directory": str(tmp / "in")}})
    return path, [str(path), "[a]", "queue"]


def _no_active_section(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(tmp, {"a": section(tmp / "in", active="false"), "b": {"directory": str(tmp), "queue": "q"}})
    return path, [str(path), "active"]


def _ports_disagree(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(
        tmp,
        {"a": section(tmp / "a", redis_port=6379), "b": section(tmp / "b", redis_port=6380)},
        {"redis_server": "127.0.0.1"},
    )
    return path, [str(path), "[a]", "[b]", "redis_port"]


def _inactivity_disagrees(tmp: Path) -> tuple[Path, list[str]]:
    path = _write(
        tmp,
        {"a": section(tmp / "a", monitor_inactivitytimeout=300),
         "b": section(tmp / "b", monitor_inactivitytimeout=60)},
    )
    return path, [str(path), "[a]", "[b]", "monitor_inactivitytimeout"]


BAD_CONFIGS: list[tuple[str, Callable[[Path], tuple[Path, list[str]]]]] = [
    ("missing file", _missing_file),
    ("unreadable: a directory", _directory_as_path),
    ("syntax error", _syntax_error),
    ("invalid regular expression", _invalid_regex),
    ("number that is not a number", _not_a_number),
    ("port that is not a number", _port_not_a_number),
    ("integer that is not an integer", _limit_not_an_integer),
    ("active section without directory", _no_directory),
    ("active section without queue", _no_queue),
    ("no active section", _no_active_section),
    ("sections disagree on redis_port", _ports_disagree),
    ("sections disagree on monitor_inactivitytimeout", _inactivity_disagrees),
]


@pytest.mark.parametrize("build", [b for _, b in BAD_CONFIGS], ids=[n for n, _ in BAD_CONFIGS])
def test_bad_configuration_exits_non_zero_with_one_line_naming_file_section_key(tmp_path, build):
    path, needles = build(tmp_path)
    status, output = run_twistd([f"--config={path}"], cwd=tmp_path)
    assert_one_line_error(status, output, *needles)


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("announce", "maybe", "is not one of created, closed"),
        ("settle", "-1", "must be between 0 and 86400"),
        ("settle", "soon", "is not a number"),
        ("settle", "90000", "must be between 0 and 86400"),
    ],
)
def test_bad_announce_or_settle_exits_78_with_one_line_naming_the_key(tmp_path, key, value, problem):
    path = _write(tmp_path, {"a": section(tmp_path / "in", **{key: value})})
    status, output = run_twistd([f"--config={path}"], cwd=tmp_path)
    line = assert_one_line_error(status, output, str(path), "[a]", f"{key}: '{value}' {problem}")
    assert status == 78, (status, line)


def test_no_config_option_exits_non_zero_with_one_line_asking_for_it(tmp_path):
    status, output = run_twistd([], cwd=tmp_path)
    assert_one_line_error(status, output, "--config")


def test_unknown_key_exits_78_before_starting_with_one_line_and_a_suggestion(tmp_path):
    """C{actve = true} would leave the section unwatched while the daemon says ready."""
    watched = tmp_path / "in"
    watched.mkdir()
    path = _write(tmp_path, {"a": {"actve": "true", "directory": str(watched), "queue": "q"},
                             "b": section(watched)})
    status, output = run_twistd([f"--config={path}"], cwd=tmp_path)
    line = assert_one_line_error(status, output, str(path), "[a]", "unknown key 'actve'",
                                 "(did you mean 'active'?)")
    assert status == 78, (status, line)


def test_a_configuration_written_for_the_original_program_starts_without_a_notice(
    tmp_path, redis_server, redis_client, observer_factory
):
    """
    Every key the original pyinotify program read, spelled as its sample
    spelled them (C{Redis_server}, C{redis_unix_socket=null}, C{counter}),
    is a key of this one: such a file starts, with no warning at all.
    """
    watched = tmp_path / "dir" / "stage1"
    watched.mkdir(parents=True)
    config = tmp_path / "directory_observer.ini"
    config.write_text(
        "[common]\nactive=false\nforced_poll=300\npoll_queue_limit=10000\n"
        "monitor_inactivitytimeout=300\nRedis_server=127.0.0.1\n"
        f"Redis_port={redis_server.port}\nredis_unix_socket=null\ntimeout=10\n"
        "ignore=^.*\\.t$;^.*\\.tmp$\nonly=^.*$\n\n"
        "[stage1:common]\nactive=true\ndirectory=dir/stage1\nqueue=queue:stage1\n"
        "counter=counter:stage1\n"
    )
    observer = observer_factory(config).start()
    (watched / "f.dat").write_bytes(b"")
    events = drain(redis_client, "queue:stage1", 1, timeout=5)
    assert [(e["filename"], e["event"]) for e in events] in ([("f.dat", "created")], [("f.dat", "exists")])
    assert observer.is_running()
    assert not [line for line in observer.output().splitlines() if "#warn]" in line or "#error]" in line]


def test_mixed_case_redis_keys_are_read(tmp_path, redis_server, redis_client, observer_factory):
    """Keys are case-insensitive: Redis_Server / REDIS_PORT name the server."""
    watched = tmp_path / "in"
    watched.mkdir()
    (watched / "pre.dat").write_bytes(b"")
    config = tmp_path / "mixed.ini"
    config.write_text(
        "[common]\n"
        "Redis_Server = 127.0.0.1\n"
        f"REDIS_PORT = {redis_server.port}\n"
        "\n"
        "[a:common]\n"
        "Active = true\n"
        f"Directory = {watched}\n"
        "Queue = q\n"
    )
    observer_factory(config).start()
    events = drain(redis_client, "q", 1, timeout=5)
    assert [(e["filename"], e["event"]) for e in events] == [("pre.dat", "exists")]


def _port_closed(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def test_repository_sample_configuration_runs_with_embedded_redis(
    tmp_path, repo_root, observer_factory
):
    """The sample directory_observer.ini (mixed-case Redis_server/Redis_port,
    relative directories, inheritance from [common]) is accepted as is, apart
    from its port; with --embedded-redis the events land in the daemon's own
    valkey-server, which is gone after SIGTERM."""
    import valkey

    port = free_port()
    text = (repo_root / "directory_observer.ini").read_text()
    assert "Redis_port=8080" in text and "Redis_server=" in text
    config = tmp_path / "directory_observer.ini"
    config.write_text(text.replace("Redis_port=8080", f"Redis_port={port}"))
    (tmp_path / "dir" / "stage1").mkdir(parents=True)
    (tmp_path / "dir" / "stage2").mkdir(parents=True)
    # Run from elsewhere: relative directories follow the file, not the cwd.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    observer = observer_factory(config, extra_args=["--embedded-redis"], cwd=elsewhere)
    observer.start(timeout=20)
    assert "watching 2 of 2 directories" in observer.wait_for_line("dirobserver ready")
    stage1 = tmp_path / "dir" / "stage1"
    observer.wait_for_line(f"Listed {stage1}:", timeout=5)
    (stage1 / "hello.csv").write_bytes(b"1,2,3\n")
    (stage1 / "ignored.tmp").write_bytes(b"")  # the sample's ignore list
    (stage1 / "last.csv").write_bytes(b"")

    client = valkey.Valkey(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        events = drain(client, "queue:stage1", 2, timeout=5)
        assert [(e["directory"], e["filename"], e["event"]) for e in events] == [
            (str(stage1), "hello.csv", "created"),
            (str(stage1), "last.csv", "created"),
        ]
        assert int(client.get("counter:stage1")) == 2
    finally:
        client.close()

    observer.terminate()
    status = observer.wait(20)
    assert "dirobserver stopped" in observer.output()
    assert wait_until(lambda: _port_closed(port), timeout=5), "embedded valkey-server still answers"
    assert status == 0, observer.output()
    # The server's warning about vm.overcommit_memory (0 by default) is not
    # relayed as a warning; where it applies, one line of ours says it.
    output = observer.output()
    assert "Memory overcommit must be enabled" not in output, output
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "0":
        assert output.count("memory overcommit is off") == 1, output
