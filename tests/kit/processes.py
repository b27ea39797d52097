"""
Child processes, ports and scratch directories: what every real-process
test, the benchmark and the soak start their servers and daemons with.

Every child is started by L{spawn}: in its own session (a Ctrl-C at the
terminal reaches the parent only, which then stops the children in order)
and with C{PR_SET_PDEATHSIG} (if the parent dies without cleaning up, the
kernel sends the child SIGTERM).  Two ways make sure none outlives its user:

 - the tests: every server and daemon is remembered in a registry, and
   L{kill_leftovers} (called by conftest.py at the end of the session) kills
   whatever a test forgot;
 - the benchmark and the soak: L{Resources} holds what must be ended and
   removed, and its L{Resources.close} runs in a C{finally}, so also on
   Ctrl-C, SIGTERM and exceptions.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

#: The repository root (where setup.py, twisted/plugins/, tests/ and bench/ are).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

_PR_SET_PDEATHSIG = 1

# Servers and daemons started by the kit and not yet reaped; see kill_leftovers().
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


class Killable(Protocol):
    def kill(self) -> int | None: ...


def remember(thing: Killable) -> None:
    """Register a running server or daemon for L{kill_leftovers}."""
    _LIVE.add(thing)


def forget(thing: Killable) -> None:
    """It was reaped: L{kill_leftovers} need not see it."""
    _LIVE.discard(thing)


def kill_leftovers() -> None:
    """SIGKILL every server and daemon of the kit that is still running."""
    for thing in list(_LIVE):
        try:
            thing.kill()
        except Exception:  # best effort at teardown; never mask the real error
            pass


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: own session, and SIGTERM when the parent goes away."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except Exception:
        pass


def code_under_test() -> Path | None:
    """
    Another copy of the project to run (the benchmark's and the soak's
    ``--source DIR``, e.g. a ``git archive`` of a commit): its C{dirobserver}
    and dropin come first in every child.
    """
    source = os.environ.get("DIROBSERVER_BENCH_SOURCE")
    return Path(source).resolve() if source else None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """
    The environment of every child: the code under test, then the repository
    root, first on the path (so the dropin in C{twisted/plugins/} is found
    even when the project is not installed); unbuffered output.
    """
    env = dict(os.environ)
    first = [str(code_under_test())] if code_under_test() else []
    parts = first + [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(args: Sequence[str], preexec: Callable[[], None] | None = None, **kwargs: Any) -> subprocess.Popen:
    """
    Popen with the kit's conventions (see the module docstring).

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


def twistd_path() -> Path:
    """The twistd script of the Python running this."""
    path = Path(sys.executable).parent / "twistd"
    if not path.exists():
        raise RuntimeError(
            f"no twistd next to {sys.executable}; install Twisted in that environment"
        )
    return path


def twistd_command() -> list[str]:
    """
    The command that stands for C{twistd}: L{twistd_path}, or, for
    experiments (a patched or instrumented twistd), the words of
    C{DIROBSERVER_BENCH_TWISTD}, e.g. C{"python /tmp/wrapper.py"}.
    """
    override = os.environ.get("DIROBSERVER_BENCH_TWISTD")
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "twistd"
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def drop_root_file_access() -> None:
    """
    preexec_fn: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's
    bounding set, so that even as root it obeys directory permissions (a
    "permission denied" can then be provoked in a suite that runs as root).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP failed")


# -- what the benchmark and the soak end and remove ---------------------------------


class Resources:
    """What must be ended and removed at the end, whatever happens."""

    def __init__(self) -> None:
        self._procs: list[tuple[subprocess.Popen, int]] = []
        self._things: list[Killable] = []
        self._dirs: list[Path] = []

    def process(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> subprocess.Popen:
        """End C{proc} with C{sig} (SIGKILL if it lingers) at L{close}."""
        self._procs.append((proc, sig))
        return proc

    def server(self, thing: Any) -> Any:
        """Kill C{thing} (a server of the kit: it has C{kill()}) at L{close}."""
        self._things.append(thing)
        return thing

    def directory(self, path: Path) -> Path:
        """Remove C{path} at L{close}."""
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
        for thing in reversed(self._things):
            try:
                thing.kill()
            except Exception:
                pass
        self._things.clear()
        for path in reversed(self._dirs):
            remove_tree(path)
        self._dirs.clear()


def scratch_root(resources: Resources, prefix: str = "dirobserver-bench-") -> Path:
    """A fresh directory for a whole run, on tmpfs when possible; removed at close."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return resources.directory(Path(tempfile.mkdtemp(prefix=prefix, dir=base)))


def remove_tree(path: Path) -> None:
    """Remove a directory tree (a million entries: rm is several times faster)."""
    if not os.path.lexists(path):
        return
    rm = shutil.which("rm")
    if rm:
        subprocess.run([rm, "-rf", "--", str(path)], check=False)
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)


# -- what /proc says of a process ---------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def copy_checkout(parent: Path) -> Path:
    """
    A copy of this checkout under C{parent}, as a source distribution would
    hold it (no git, virtual environment, build output, tests or bench):
    what a pip install or a wheel build is run on, so that neither writes
    into the checkout itself.
    """
    source = parent / "dirobserver"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "dropin.cache",
        "dir", "results", "tests", "bench", "soak"))
    return source
