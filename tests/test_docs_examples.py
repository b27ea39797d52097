"""
The examples of README.md and docs/*.md run as written, so they cannot drift.

A fenced block preceded by an HTML comment C{<!-- run: NAME -->} is meant
to run.  This test finds every such block (a marker not followed by a
fenced block fails, and so does a marker that appears or disappears: the
names are listed in L{EXPECTED}), installs a copy of this checkout with pip
and its C{[embedded]} extra, plus the C{valkey} client the consumers
import, into a fresh virtual environment (as README.md says), and runs the
blocks in an empty directory with that environment active, as an operator
following the README would: the sample configuration, C{--check}, the
daemon with C{--embedded-redis}, C{valkey-cli}, and both Python consumers.

The one change made to the blocks: the sample's port 8080 becomes a free
port, so that the test never meets another Redis on this machine.  The
consumers loop forever; each is proved by its effect (the list is emptied,
the stream's entries acknowledged) and then stopped.

It takes a minute (the install); marked C{slow}.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.processes import REPO_ROOT, copy_checkout, free_port
from tests.kit.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.process,
    pytest.mark.skipif(os.environ.get("DIROBSERVER_SKIP_PACKAGING") == "1",
                       reason="DIROBSERVER_SKIP_PACKAGING=1 (package index unreachable)"),
]

#: Every block marked to run: (document, name) -> language.
EXPECTED = {
    ("README.md", "first-start"): "sh",
    ("README.md", "daemon"): "sh",
    ("README.md", "first-event"): "sh",
    ("README.md", "consume-list"): "python",
    ("README.md", "stream-group"): "sh",
    ("README.md", "consume-stream"): "python",
    ("docs/operations.md", "plugin-cache"): "sh",
}

_MARKER = re.compile(r"<!-- run: ([\w-]+) -->\n")
_FENCE = re.compile(r"```(\w+)\n(.*?)\n```\n", re.DOTALL)


def marked_blocks() -> dict[tuple[str, str], tuple[str, str]]:
    """(document, name) -> (language, code) of every marked block; a marker
    that does not stand right before a fenced block is an error."""
    blocks: dict[tuple[str, str], tuple[str, str]] = {}
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        document = path.relative_to(REPO_ROOT).as_posix()
        for marker in _MARKER.finditer(text):
            fence = _FENCE.match(text, marker.end())
            assert fence, f"{document}: <!-- run: {marker.group(1)} --> is not followed by a fenced block"
            key = (document, marker.group(1))
            assert key not in blocks, f"{document}: two blocks named {marker.group(1)}"
            blocks[key] = (fence.group(1), fence.group(2) + "\n")
    return blocks


def test_the_marked_blocks_are_the_expected_ones():
    """A marker that is lost, moved off its block, or added without a run here fails."""
    found = {key: language for key, (language, _code) in marked_blocks().items()}
    assert found == EXPECTED


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with this checkout installed as README.md says."""
    source = copy_checkout(tmp_path_factory.mktemp("source"))
    venv = tmp_path_factory.mktemp("venv") / "venv"
    env = _clean_env()
    for command in ([sys.executable, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                     "--disable-pip-version-check", f"{source}[embedded]", "valkey"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return venv


def _clean_env() -> dict[str, str]:
    """This environment without its Python settings (the tests' own venv and PYTHONPATH)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


class Reader:
    """The operator's shell: the venv active, in one working directory."""

    def __init__(self, venv: Path, cwd: Path, port: int) -> None:
        self.cwd = cwd
        self.port = port
        self.env = _clean_env()
        self.env["VIRTUAL_ENV"] = str(venv)
        self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PYTHONUNBUFFERED"] = "1"
        self.blocks = marked_blocks()

    def code(self, document: str, name: str) -> tuple[list[str], str]:
        """The command that runs a block, with the free port for 8080."""
        language, code = self.blocks[(document, name)]
        code = code.replace("8080", str(self.port))
        if language == "python":
            return ["python", "-c", code], code
        return ["bash", "-e", "-c", code], code

    def run(self, document: str, name: str, timeout: float = 60) -> str:
        """Run a block to its end; a shell block's variables stay set for the
        next blocks, as in the reader's terminal (C{VALKEY_CLI})."""
        argv, code = self.code(document, name)
        state = self.cwd.parent / "shell-state"
        if argv[0] == "bash":
            argv[-1] = f"set -a\n{argv[-1]}\nenv -0 > '{state}'\n"
        result = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"{name} exited {result.returncode}:\n{code}\n{result.stdout}{result.stderr}"
        if argv[0] == "bash":
            self.env = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
        return result.stdout

    def start(self, document: str, name: str, log: Path) -> subprocess.Popen:
        argv, _code = self.code(document, name)
        with open(log, "wb") as out:
            return subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(5)


def test_the_documented_walkthrough_runs_as_written(venv, tmp_path):
    import valkey

    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    reader = Reader(venv, work, port)

    out = reader.run("README.md", "first-start")
    assert re.search(r"dirobserver: directory_observer.ini: good: 2 active sections", out), out
    config = work / "directory_observer.ini"
    # The sample's port becomes the free one; [stage2] is made a stream, as
    # the README's stream consumer supposes ("say in [stage2]").
    text = config.read_text().replace("Redis_port=8080", f"Redis_port={port}")
    assert text.rstrip().endswith("counter=counter:stage2"), text[-200:]
    config.write_text(text.rstrip() + "\nqueue_type=stream\n")

    processes: list[subprocess.Popen] = []
    try:
        log = tmp_path / "daemon.log"
        daemon = reader.start("README.md", "daemon", log)
        processes.append(daemon)
        assert wait_until(lambda: "dirobserver ready" in log.read_text(errors="replace"), timeout=30), \
            log.read_text(errors="replace")

        # The first event, with the valkey-cli found where the README says.
        out = reader.run("README.md", "first-event", timeout=30)
        assert "queue:stage1" in out and "hello.csv" in out, out

        client = valkey.Valkey(host="127.0.0.1", port=port, socket_timeout=5)
        try:
            # The list consumer empties the list as events come.
            consumer = reader.start("README.md", "consume-list", tmp_path / "consume-list.log")
            processes.append(consumer)
            counted = int(client.get("counter:stage1") or 0)
            (work / "dir" / "stage1" / "second.csv").write_bytes(b"")
            assert wait_until(lambda: int(client.get("counter:stage1") or 0) > counted
                              and client.llen("queue:stage1") == 0, timeout=15)
            assert consumer.poll() is None, (tmp_path / "consume-list.log").read_text()

            # The stream: the group, then a worker that reads and acknowledges.
            reader.run("README.md", "stream-group", timeout=30)
            worker = reader.start("README.md", "consume-stream", tmp_path / "consume-stream.log")
            processes.append(worker)
            (work / "dir" / "stage2" / "streamed.csv").write_bytes(b"")

            def acknowledged() -> bool:
                groups = client.xinfo_groups("queue:stage2")
                last = client.xrevrange("queue:stage2", count=1)
                return bool(last) and groups[0]["pending"] == 0 \
                    and groups[0]["last-delivered-id"] == last[0][0]

            assert wait_until(acknowledged, timeout=15), (tmp_path / "consume-stream.log").read_text()
            assert worker.poll() is None, (tmp_path / "consume-stream.log").read_text()
        finally:
            client.close()
    finally:
        for process in reversed(processes):
            _stop(process)
    assert "Traceback" not in log.read_text(errors="replace")

    # The install step of docs/operations.md.
    reader.run("docs/operations.md", "plugin-cache")
