"""
End-to-end process behaviour of the daemon: signals, flush on stop, daemon
mode with a pidfile, the historical console script, and readiness time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kit import REPO_ROOT, drain, section, twistd_path, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def config_for(tmp_path: Path, port: int, watched: Path, **common: Any) -> Path:
    return write_config(
        tmp_path,
        {"in": section(watched, counter="cnt")},
        common={"redis_server": "127.0.0.1", "redis_port": port, **common},
    )


def repo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def alive(pid: int) -> bool:
    """Whether C{pid} is a live process (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


# -- signals ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_status_0_after_flushing_events(
    tmp_path, redis_server, redis_client, observer_factory, sig
):
    watched = tmp_path / "in"
    watched.mkdir()
    observer = observer_factory(config_for(tmp_path, redis_server.port, watched)).start()
    observer.wait_for_line(f"Listed {watched}:", timeout=5)
    names = [f"last{i:03d}.dat" for i in range(200)]
    for name in names:
        (watched / name).write_bytes(b"")
    observer.signal(sig)  # at once: the events are still in the daemon's hands
    status = observer.wait(20)
    output = observer.output()

    assert "dirobserver stopped" in output, output
    events = drain(redis_client, "q", len(names), timeout=1)
    assert [e["filename"] for e in events] == names
    assert {e["event"] for e in events} == {"created"}
    assert int(redis_client.get("cnt")) == len(names)
    assert re.search(r"\b0 not delivered", output), output
    assert status == 0, f"exit status {status}; output:\n{output}"


@pytest.mark.parametrize("outage", ["stopped", "paused"])
def test_sigterm_with_redis_down_exits_within_timeout_and_counts_undelivered_events(
    tmp_path, redis_server, observer_factory, outage
):
    """Redis stopped (connection refused) or paused (connected, never
    answering): either way SIGTERM ends the daemon within the configured
    timeout plus a little, and it says how many events it could not deliver."""
    watched = tmp_path / "in"
    watched.mkdir()
    timeout = 2
    observer = observer_factory(
        config_for(tmp_path, redis_server.port, watched, timeout=timeout)
    ).start()
    observer.wait_for_line(f"Listed {watched}:", timeout=5)
    mark = observer.mark()
    if outage == "stopped":
        redis_server.stop()
        observer.wait_for_line("Lost the connection to Redis", timeout=5, since=mark)
    else:
        redis_server.pause()
    for i in range(3):
        (watched / f"stuck{i}.dat").write_bytes(b"")

    began = time.monotonic()
    observer.terminate()
    status = observer.wait(timeout + 10)
    took = time.monotonic() - began
    output = observer.output()
    print(f"SIGTERM with Redis {outage}: exited in {took:.2f} s")

    assert took < timeout + 3, took
    assert re.search(r"dirobserver stopped: .*\b3 not delivered", output), output
    assert re.search(r"Stopping with 3 events not delivered", output), output
    assert status == 0, f"exit status {status}; output:\n{output}"


# -- daemon mode ---------------------------------------------------------------------


def test_daemon_mode_writes_pidfile_and_log_and_stops_on_kill_term(
    tmp_path, redis_server, redis_client
):
    watched = tmp_path / "in"
    watched.mkdir()
    config = config_for(tmp_path, redis_server.port, watched)
    logfile = tmp_path / "observer.log"
    pidfile = tmp_path / "observer.pid"
    launch_out = tmp_path / "launch.out"
    pid = None
    try:
        with open(launch_out, "wb") as out:
            launched = subprocess.run(
                [str(twistd_path()), f"--logfile={logfile}", f"--pidfile={pidfile}",
                 "dirobserver", f"--config={config}", "--log-level=debug"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=tmp_path, env=repo_env(), timeout=30,
            )
        assert launched.returncode == 0, launch_out.read_text()

        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
        pid = int(pidfile.read_text().strip())
        assert alive(pid)
        assert wait_until(
            lambda: logfile.exists() and "dirobserver ready" in logfile.read_text(), timeout=10
        ), logfile.read_text() if logfile.exists() else "no log file"
        assert wait_until(lambda: f"Listed {watched}:" in logfile.read_text(), timeout=5)

        (watched / "daemon.dat").write_bytes(b"")
        events = drain(redis_client, "q", 1, timeout=5)
        assert [(e["filename"], e["event"]) for e in events] == [("daemon.dat", "created")]

        subprocess.run(["sh", "-c", f'kill -TERM "$(cat {pidfile})"'], check=True, timeout=10)
        assert wait_until(lambda: not alive(pid), timeout=15), "daemon still running"
        assert wait_until(lambda: not pidfile.exists(), timeout=5), "pidfile left behind"
        assert "dirobserver stopped" in logfile.read_text()
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


# -- the historical console script -----------------------------------------------------


def script_command() -> list[str]:
    script = Path(sys.executable).parent / "directory_observer"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dirobserver.app.script"]


def test_console_script_runs_the_same_service_logging_to_stdout(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    config = config_for(tmp_path, redis_server.port, watched)
    observer = observer_factory(config)
    observer.args = [*script_command(), f"--config={config}", "--log-level=debug"]  # not twistd
    observer.start()
    observer.wait_for_line(f"Listed {watched}:", timeout=5)
    (watched / "script.dat").write_bytes(b"")
    events = drain(redis_client, "q", 1, timeout=5)
    assert [(e["filename"], e["event"]) for e in events] == [("script.dat", "created")]


def test_console_script_log_option_writes_the_log_to_that_file(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    config = config_for(tmp_path, redis_server.port, watched)
    logfile = tmp_path / "script.log"
    observer = observer_factory(config)
    observer.args = [*script_command(), f"--config={config}", f"--log={logfile}",
                     "--log-level=debug"]
    observer.start(wait_ready=False)
    assert wait_until(
        lambda: logfile.exists() and f"Listed {watched}:" in logfile.read_text(), timeout=15
    ), (logfile.read_text() if logfile.exists() else "no log file") + observer.output()
    assert "dirobserver ready" in logfile.read_text()
    (watched / "logged.dat").write_bytes(b"")
    events = drain(redis_client, "q", 1, timeout=5)
    assert [(e["filename"], e["event"]) for e in events] == [("logged.dat", "created")]
    assert observer.is_running()
    assert "dirobserver ready" not in observer.output()


# -- readiness ------------------------------------------------------------------------------


def test_ready_line_appears_within_a_second_on_a_small_configuration(
    tmp_path, redis_server, observer_factory
):
    dirs = [tmp_path / f"d{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    config = write_config(
        tmp_path,
        {f"s{i}": section(d, f"q{i}") for i, d in enumerate(dirs)},
        common={"redis_server": "127.0.0.1", "redis_port": redis_server.port},
    )
    observer = observer_factory(config)
    began = time.monotonic()
    observer.start(timeout=10)
    took = time.monotonic() - began
    print(f"dirobserver ready {took:.3f} s after process start (target: 1 s)")
    assert "watching 3 of 3 directories" in observer.wait_for_line("dirobserver ready")
    assert took < 3, took


@pytest.mark.exclusive  # uses up the user's inotify instances: nothing may run beside it
def test_no_inotify_instance_left_is_one_clear_line_and_exit_71(tmp_path, redis_server):
    """
    When fs.inotify.max_user_instances is used up (by other programs of the
    same user), the observer says so in one critical line and exits 71
    (EX_OSERR), without a traceback.  The test uses up the instances itself,
    for the few seconds the observer needs, then gives them back.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    held: list[int] = []
    try:
        for _ in range(100_000):
            fd = libc.inotify_init1(os.O_CLOEXEC)
            if fd < 0:
                break
            held.append(fd)
        else:
            pytest.skip("no limit on inotify instances here")
        watched = tmp_path / "in"
        watched.mkdir()
        config = write_config(
            tmp_path,
            {"s": {"active": "true", "directory": watched, "queue": "q"}},
            {"redis_server": "127.0.0.1", "redis_port": redis_server.port},
        )
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        result = subprocess.run(
            [str(twistd_path()), "-n", "--pidfile=", "dirobserver", f"--config={config}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
        )
    finally:
        for fd in held:
            os.close(fd)
    output = result.stdout + result.stderr
    assert result.returncode == 71, output
    assert "max_user_instances" in output, output
    assert "Traceback" not in output, output


# -- privileges --------------------------------------------------------------------------


def _nobody() -> tuple[int, int] | None:
    import grp
    import pwd

    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        return None
    for group in ("nogroup", "nobody"):
        try:
            return user.pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            continue
    return user.pw_uid, user.pw_gid


@pytest.mark.skipif(os.geteuid() != 0 or _nobody() is None, reason="needs root and a 'nobody' user")
def test_daemon_started_as_root_runs_as_nobody_and_delivers(redis_server, redis_client):
    """
    twistd --uid=nobody --gid=<its group>: the log file and pidfile are made as
    root, then the observer runs unprivileged (its Python installation may
    not even be readable by nobody here, so nothing may be imported late),
    delivers events, and stops cleanly on SIGTERM.
    """
    import tempfile

    uid, gid = _nobody()
    root = Path(tempfile.mkdtemp(prefix="dirobserver-uid-"))
    try:
        root.chmod(0o755)
        watched = root / "in"
        watched.mkdir()
        os.chown(watched, uid, gid)
        config = config_for(root, redis_server.port, watched)
        run = root / "run"  # the pidfile's directory: writable by the daemon, to remove it
        run.mkdir()
        os.chown(run, uid, gid)
        logfile, pidfile = root / "observer.log", run / "observer.pid"
        launched = subprocess.run(
            [str(twistd_path()), f"--uid={uid}", f"--gid={gid}", f"--logfile={logfile}",
             f"--pidfile={pidfile}", "dirobserver", f"--config={config}"],
            stdin=subprocess.DEVNULL, capture_output=True, cwd=root, env=repo_env(), timeout=30,
        )
        assert launched.returncode == 0, launched
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
        pid = int(pidfile.read_text().strip())
        try:
            assert wait_until(lambda: "dirobserver ready" in logfile.read_text(), timeout=10), \
                logfile.read_text()
            with open(f"/proc/{pid}/status") as status:
                uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
            assert {int(u) for u in uids} == {uid}
            (watched / "unprivileged.dat").write_bytes(b"")
            events = drain(redis_client, "q", 1, timeout=5)
            assert [e["filename"] for e in events] == ["unprivileged.dat"], logfile.read_text()
            os.kill(pid, signal.SIGTERM)
            assert wait_until(lambda: not alive(pid), timeout=15)
            assert wait_until(lambda: not pidfile.exists(), timeout=5), "pidfile left behind"
            text = logfile.read_text()
            assert "dirobserver stopped" in text and "Traceback" not in text, text
        finally:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
