"""
Fixtures shared by every test: real Redis servers and real observer daemons.

Everything started here is torn down after its test, whatever the outcome;
and at the end of the session anything still alive (a process a test made
by hand and forgot) is killed, so a run never leaves servers or daemons
behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.kit import (
    REPO_ROOT,
    Observer,
    RedisServer,
    kill_leftovers,
)


def _no_child(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(
        "this test starts a process: mark it @pytest.mark.process (`make unit` runs "
        "only the tests without that mark, which start no subprocess and no server)")


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A test not marked C{process} fails if it starts a process (a server, the
    daemon, any command), in every run: so the mark cannot lie, and
    C{make unit} stays a run of seconds.
    """
    if request.node.get_closest_marker("process") is not None:
        return
    monkeypatch.setattr(subprocess.Popen, "__init__", _no_child)
    monkeypatch.setattr(os, "fork", _no_child)
    monkeypatch.setattr(os, "posix_spawn", _no_child)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Kill any RedisServer or Observer process that outlived its test."""
    kill_leftovers()


@pytest.fixture
def repo_root() -> Path:
    """The repository root (where setup.py and twisted/plugins/ live)."""
    return REPO_ROOT


@pytest.fixture
def shm(tmp_path: Path) -> Iterator[Path]:
    """A private directory on tmpfs (/dev/shm: fast, O_TMPFILE) when there is one."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="dirobserver-test-", dir=base or tmp_path))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started valkey-server on a free 127.0.0.1 port, private to the test."""
    server = RedisServer(workdir=tmp_path / "redis-server")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    """A C{valkey.Valkey} client (bytes replies) for L{redis_server}."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_server_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., RedisServer]]:
    """
    Make more servers: C{factory(start=True, unix_socket=None, **kwargs)}.

    Keyword arguments go to L{RedisServer}; all are stopped at teardown.
    """
    servers: list[RedisServer] = []

    def factory(
        start: bool = True,
        unix_socket: str | Path | None = None,
        **kwargs: Any,
    ) -> RedisServer:
        kwargs.setdefault("workdir", tmp_path / f"redis-server-{len(servers) + 1}")
        server = RedisServer(**kwargs)
        servers.append(server)
        if start:
            server.start(unix_socket=unix_socket)
        return server

    try:
        yield factory
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def observer_factory(tmp_path: Path) -> Iterator[Callable[..., Observer]]:
    """
    Make L{Observer}s: C{factory(config, extra_args=(), cwd=None, env=None)}.

    They are not started (call C{.start()}).  The working directory defaults
    to the test's tmp_path.  At teardown any still running is killed, and the
    output of each is printed, so a failing test shows what the daemon said.
    """
    observers: list[Observer] = []

    def factory(
        config: str | Path,
        extra_args: Sequence[str] = (),
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> Observer:
        observer = Observer(
            config, extra_args=extra_args, cwd=cwd or tmp_path, env=env, preexec_fn=preexec_fn
        )
        observers.append(observer)
        return observer

    try:
        yield factory
    finally:
        for number, observer in enumerate(observers, 1):
            if observer.proc is None:
                continue
            if observer.is_running():
                observer.kill()
            # Captured by pytest, and shown only when the test failed.
            print(f"--- observer #{number} {observer.args} (exit {observer.returncode})")
            print(observer.output())


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    """
    Make worker daemons: C{factory(config, section, options, command)}
    (L{worker_helpers.Worker}); not started.  At teardown any still running
    is killed and the output of each is printed.
    """
    from tests.kit.worker import worker_factory_fixture

    factory, finish = worker_factory_fixture(tmp_path)
    try:
        yield factory
    finally:
        finish()


@pytest.fixture
def collectors() -> Iterator[Any]:
    """
    The tree tests' collectors (L{tests.test_e2e_trees.Collector}: BRPOP in
    a thread): C{collectors(server, queue="q")}; stopped at the end.
    """
    from tests.test_e2e_trees import Collector

    made: list[Collector] = []

    def factory(server: Any, queue: str = "q") -> Collector:
        made.append(Collector(server, queue))
        return made[-1]

    try:
        yield factory
    finally:
        for collector in made:
            collector.stop()
