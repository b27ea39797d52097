"""The worker's options (L{dirobserver.worker.tap}): every bad input is one line and exit 78; what a good one builds."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dirobserver.worker import run, tap
from dirobserver.worker.queues import BadEvent, Event, from_fields, from_json
from dirobserver.worker.service import WorkerService
from dirobserver.worker.settings import locate
from tests.kit import REPO_ROOT, twistd_command, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return write_config(tmp_path, {
        "data": {"active": "true", "directory": str(tmp_path / "in"), "queue": "files"},
        "other": {"active": "true", "directory": str(tmp_path / "in2"), "queue": "files"},
        "asleep": {"active": "false", "directory": str(tmp_path / "in3"), "queue": "q3"},
    }, common={"redis_server": "127.0.0.1", "redis_port": 6379})


def _parse(args: list[str]) -> tap.Options:
    options = tap.Options()
    options.parseOptions(args)
    return options


def _refused(capsys: Any, args: list[str]) -> str:
    with pytest.raises(SystemExit) as raised:
        _parse(args)
    assert raised.value.code == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dirobserver-worker: ")
    return err


def test_bad_inputs_are_one_line_and_exit_78(tmp_path: Path, config: Path, capsys: Any) -> None:
    base = [f"--config={config}", "--section=data", f"--failed={tmp_path / 'failed'}"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a directory")
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    cases = {
        "no active section [nope]": [f"--config={config}", "--section=nope", "--delete",
                                     f"--failed={tmp_path / 'f'}", "--", "true"],
        "no active section [asleep]": [f"--config={config}", "--section=asleep", "--delete",
                                       f"--failed={tmp_path / 'f'}", "--", "true"],
        "cannot read configuration file": [f"--config={tmp_path / 'missing.ini'}", "--section=data", "--delete",
                         f"--failed={tmp_path / 'f'}", "--", "true"],
        "either --done=DIR or --delete": [*base, "--", "true"],
        "either --done=DIR or --delete ": [*base, "--delete", f"--done={tmp_path / 'd'}", "--", "true"],
        "no --failed=DIR": [f"--config={config}", "--section=data", "--delete", "--", "true"],
        "--failed=": [f"--config={config}", "--section=data", "--delete",
                      f"--failed={blocked / 'sub'}", "--", "true"],
        "not found in PATH": [*base, "--delete", "--", "no-such-command-here"],
        "not executable": [*base, "--delete", "--", str(not_executable)],
        "command /nowhere/x: no such file": [*base, "--delete", "--", "/nowhere/x"],
        "no command given": [*base, "--delete"],
        "--jobs=0: must be more than 0": [*base, "--delete", "--jobs=0", "--", "true"],
        "--timeout=soon: not a number": [*base, "--delete", "--timeout=soon", "--", "true"],
        "--reclaim-after=-1": [*base, "--delete", "--reclaim-after=-1", "--", "true"],
        "no section given": [f"--config={config}", "--delete", "--", "true"],
    }
    for expected, args in cases.items():
        assert expected.strip() in _refused(capsys, args), args


def test_a_good_command_line_builds_the_worker(tmp_path: Path, config: Path) -> None:
    options = _parse([f"--config={config}", "--section=data", f"--done={tmp_path / 'done'}",
                      f"--failed={tmp_path / 'failed'}", "--jobs=4", "--timeout=2.5", "--",
                      "gzip", "-k", "{}"])
    worker = options["worker"]
    assert (worker.queue, worker.queue_type, worker.jobs, worker.timeout) == ("files", "list", 4, 2.5)
    assert worker.command == ("gzip", "-k", "{}") and os.path.isabs(worker.executable)
    assert worker.reclaim_after == tap.RECLAIM_AFTER and worker.group == tap.GROUP
    # Both sections push to "files": events of either directory are the worker's.
    assert worker.directories == (str(tmp_path / "in"), str(tmp_path / "in2"))
    assert (tmp_path / "done").is_dir() and (tmp_path / "failed").is_dir()
    service = tap.makeService(options)
    assert isinstance(service, WorkerService) and list(service) == []
    with_metrics = _parse([f"--config={config}", "--section=data", "--delete",
                           f"--failed={tmp_path / 'failed'}", "--metrics=tcp:0", "--", "true"])
    assert [type(s).__name__ for s in tap.makeService(with_metrics)] == ["MetricsService"]


@pytest.mark.process
def test_twistd_exits_78_on_a_bad_command_line_before_starting(tmp_path: Path, config: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [*twistd_command(), "-n", "--pidfile=", "dirobserver-worker", f"--config={config}",
         "--section=data", "--delete", f"--failed={tmp_path / 'f'}", "--", "no-such-command-here"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 78
    assert done.stderr == "dirobserver-worker: command no-such-command-here: not found in PATH\n"


def test_the_path_replaces_braces_or_comes_last() -> None:
    assert run.arguments(["gzip", "-k"], "/d/a b.csv") == ["gzip", "-k", "/d/a b.csv"]
    assert run.arguments(["conv", "--in={}", "--out={}.out"], "/d/a") == \
        ["conv", "--in=/d/a", "--out=/d/a.out"]
    # The program itself is never substituted (it is checked before start).
    assert run.arguments(["{}"], "/d/a") == ["{}", "/d/a"]


def test_locate_keeps_the_path_relative_to_the_sections_directory() -> None:
    tops = ("/srv/in", "/srv/other")
    assert locate(Event("h", "/srv/in/sub", "a.csv"), tops) == ("/srv/in/sub/a.csv", "sub/a.csv")
    assert locate(Event("h", "/srv/other", "b"), tops) == ("/srv/other/b", "b")
    for directory, name in [("/srv/elsewhere", "a"), ("/srv/in", "../x"), ("/srv/in", "a/b"),
                            ("srv/in", "a"), ("/srv/in/.a.w-1.working", "a"), ("/srv/in", ""),
                            ("/srv/in", "x.working"), ("/srv/in/..", "x")]:
        with pytest.raises(BadEvent):
            locate(Event("h", directory, name), tops)


def test_events_are_read_from_the_observers_json_and_stream_fields() -> None:
    raw = '{"directory": "/d", "filename": "\\udcff.csv", "event": "created", "event_timestamp": 1.5}'
    event = from_json(raw)
    assert (event.handle, event.directory, os.fsencode(event.filename)) == (raw, "/d", b"\xff.csv")
    fields = ["directory", "/d", "filename", b"\xff.csv", "event", "created", "event_timestamp", "1.5"]
    assert os.fsencode(from_fields("1-0", fields).filename) == b"\xff.csv"
    for bad in ["not json", "[]", '{"directory": "/d"}', '{"directory": 1, "filename": "a"}']:
        with pytest.raises(BadEvent):
            from_json(bad)
    with pytest.raises(BadEvent):
        from_fields("1-0", ["directory", "/d"])


@pytest.mark.process
def test_the_group_launcher_makes_a_new_process_group() -> None:
    launcher = run.group_launcher()
    out = subprocess.run([*launcher, sys.executable, "-c", "import os; print(os.getpgid(0) == os.getpid())"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "True"
    assert stat.S_ISREG(os.stat(launcher[0]).st_mode)
