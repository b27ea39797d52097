"""
The real daemon, ``twistd -n --pidfile= dirobserver --config=PATH``, as a
subprocess, two ways:

 - L{Observer} (the tests): its output read by a thread into memory, line by
   line, so that a test can wait for a log line;
 - L{LoggedObserver} (the benchmark and the soak): its output written to a
   file, which is only read when asked (millions of lines must cost the
   measuring process nothing).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .processes import Resources, child_env, forget, remember, spawn, stop_process, twistd_command

#: The line the daemon logs once every section is watched (its start-up
#: listing may still run: wait for its "Listed" line where that matters).
READY_MARK = "dirobserver ready"


def observer_args(config: str | Path, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line: twistd in the foreground, no pidfile, the dirobserver subcommand."""
    # No pidfile: many daemons run from one directory at once.
    return [*twistd_command(), "-n", "--pidfile=", "dirobserver", f"--config={config}", *extra_args]


class Observer:
    """
    The daemon for a test: stdout and stderr are merged and read by a
    background thread into L{lines}, so the pipe never fills up and tests
    can wait for log lines (L{wait_for_line}).
    """

    READY_MARK = READY_MARK

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
        # The tests wait for debug lines ("Listed ...") as sync points.
        level = [] if any(a.startswith("--log-level") for a in extra_args) else ["--log-level=debug"]
        self.args: list[str] = observer_args(self.config, [*level, *extra_args])
        self.env = child_env(dict(env or {}))
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
        self.proc = spawn(
            self.args, preexec=self.preexec_fn, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.cwd, env=self.env,
        )
        remember(self)
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
        forget(self)
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


class LoggedObserver:
    """
    The daemon for the benchmark and the soak, started at once; its log goes
    to C{<workdir>/observer.log}, which L{wait_ready} and L{log_count} read.
    """

    _READY = READY_MARK.encode()
    #: The log's file name in C{workdir}, and the process in messages.
    LOG_NAME = "observer.log"
    WHAT = "the observer"

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
        @param preexec: see L{tests.kit.processes.spawn}.
        @param env: more environment variables.
        @param append: add to the log of an earlier observer (a restart)
            instead of starting it afresh; the ready line is looked for in
            the new part only.
        """
        self.log = workdir / self.LOG_NAME
        log_file = open(self.log, "ab" if append else "wb")
        self._seen = b""
        self._offset = log_file.tell()
        self.ready_at: float | None = None
        self.started_at = time.time()
        self.proc = resources.process(
            spawn(self.arguments(config, extra_args), preexec=preexec, stdout=log_file,
                  stderr=subprocess.STDOUT, cwd=workdir, env=child_env(env))
        )
        log_file.close()
        self.pid = self.proc.pid

    def arguments(self, config: Path, extra_args: Sequence[str]) -> list[str]:
        """The command line (the worker's kit overrides it)."""
        return observer_args(config, extra_args)

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
            if self._READY in data:
                self.ready_at = now
                return True
            # Keep a tail only, for a mark that straddles two reads (look
            # before trimming: a read may hold the mark and many lines after).
            self._seen = data[-len(self._READY):]
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.WHAT} exited with {self.proc.returncode}:\n{self.tail()}")
        return False

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for the ready line; return seconds since the Popen."""
        deadline = time.monotonic() + timeout
        while not self.poll_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.WHAT} was not ready within {timeout} s:\n{self.tail()}")
            time.sleep(0.002)
        assert self.ready_at is not None
        return self.ready_at - self.started_at

    def stop(self) -> int | None:
        """SIGTERM, and SIGKILL after 30 s."""
        return stop_process(self.proc, grace=30.0)

    def tail(self, n: int = 40) -> str:
        """The last C{n} lines of the log."""
        try:
            lines = self.log.read_bytes().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def log_count(self, mark: bytes) -> int:
        """How often C{mark} stands in the log."""
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

