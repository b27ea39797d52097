"""
L{dirobserver.app.embedded_redis.probe}: a real RESP PING tells a Redis
(answering PONG, or an error such as NOAUTH) from another program holding
the port; and the daemon, started with C{--embedded-redis} on a port an
HTTP server holds, says so in one line and exits 78.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from dirobserver.app.embedded_probe import probe
from tests.kit import free_port, write_config


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's output is the daemon's


@pytest.fixture
def http_port() -> Iterator[int]:
    """A real HTTP server (the standard library's) on a loopback port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _Silent(socketserver.BaseRequestHandler):
    """Accepts, reads, never answers (until the client hangs up)."""

    def handle(self) -> None:
        while self.request.recv(64):
            pass


class _HangsUp(socketserver.BaseRequestHandler):
    """Accepts and closes at once."""

    def handle(self) -> None:
        pass


def _serve(handler: type[socketserver.BaseRequestHandler]) -> socketserver.ThreadingTCPServer:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.process
def test_a_real_redis_answers_ping(redis_server):
    found = probe("127.0.0.1", redis_server.port)
    assert found.redis and not found.nothing and found.other is None


@pytest.mark.process
def test_a_redis_that_wants_a_password_is_still_a_redis(redis_server):
    """-NOAUTH is RESP: the writer, not the probe, deals with the password."""
    redis_server.client().config_set("requirepass", "s3cret")
    found = probe("127.0.0.1", redis_server.port)
    assert found.redis, found


def test_nothing_listening():
    found = probe("127.0.0.1", free_port())
    assert found.nothing and not found.redis


def test_an_http_server_is_not_redis(http_port):
    found = probe("127.0.0.1", http_port)
    assert not found.redis and not found.nothing
    # It takes "*1" for an HTTP/0.9 request, and answers with an HTML page.
    assert "answered PING with '<!DOCTYPE HTML>'" in (found.other or ""), found


@pytest.mark.parametrize(("handler", "said"), [
    (_Silent, "no answer to PING within 0.3 s"),
    (_HangsUp, "closed the connection without answering PING"),
])
def test_a_server_that_does_not_answer_resp_is_not_redis(handler, said):
    server = _serve(handler)
    try:
        found = probe("127.0.0.1", server.server_address[1], reply_timeout=0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert not found.redis and said in (found.other or ""), found


@pytest.mark.process
def test_embedded_redis_on_a_port_held_by_http_is_one_line_and_78(tmp_path, http_port, observer_factory):
    """twistd --embedded-redis where an HTTP server listens: one error line,
    no valkey-server started, nothing watched, exit status 78."""
    watched = tmp_path / "in"
    watched.mkdir()
    path = write_config(tmp_path, {"s": {"active": "true", "directory": watched, "queue": "q"}},
                        {"redis_server": "127.0.0.1", "redis_port": http_port})
    observer = observer_factory(path, extra_args=["--embedded-redis"])
    observer.start(wait_ready=False)
    status = observer.wait(20)
    output = observer.output()
    assert status == 78, output
    refusals = [line for line in output.splitlines() if "not Redis" in line]
    assert len(refusals) == 1, output
    assert f"127.0.0.1:{http_port}" in refusals[0] and "answered PING" in refusals[0], output
    assert "Traceback" not in output and "already answers" not in output, output
    assert "Embedded Redis (valkey-server" not in output and "Watching" not in output, output
    # The HTTP server still answers: the daemon left it alone.
    with socket.create_connection(("127.0.0.1", http_port), timeout=2):
        pass
