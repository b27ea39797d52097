"""
TLS against a real TLS server (Debian's redis-server; see L{tls_helpers}):
verification of the certificate and of the name on by default, one line
when it fails, the capped backoff, client certificates, and the daemon
configured with the C{redis_tls*} keys.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest

from dirobserver.redis.writer import RedisWriter
from tests.kit import wait_until, write_config
from tests.kit.cases import Connecting
from tests.kit.log_capture import LogCapture
from tests.kit.sentinel import MASTER_NAME, sentinel_config
from tests.kit.tls import Certificates, TLSRedisServer, needs_tls_server, tls_settings
from tests.kit.waiting import sleep

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


@needs_tls_server
class TLSConnectionTests(Connecting, unittest.TestCase):
    def setUp(self) -> None:
        self.logs = LogCapture(self)
        # A temporary directory, not trial's mktemp() (under pytest it
        # writes into the checkout).
        self.base = Path(tempfile.mkdtemp(prefix="dirobserver-test-"))
        self.addCleanup(shutil.rmtree, self.base, True)
        self.certificates = Certificates(self.base / "certs")

    def server(self, auth_clients: str = "no") -> TLSRedisServer:
        server = TLSRedisServer(self.certificates, auth_clients, workdir=self.base / "server")
        server.start()
        self.addCleanup(server.cleanup)
        return server

    @defer.inlineCallbacks
    def test_a_verified_server_takes_the_events(self):
        """
        The certificate chains to redis_tls_ca and holds the address dialled
        (an IP address: verified as one); events arrive.
        """
        server = self.server()
        writer = RedisWriter(tls_settings(server), 1000, reactor)
        writer.startService()
        self.addCleanup(writer.stopService)
        writer.push_many(writer.queue("q", "c"), [b"e1", b"e2"])
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 2)))
        client = server.client()
        self.assertEqual(client.lrange("q", 0, -1), [b"e2", b"e1"])
        self.assertEqual(self.logs.lines("warn"), [])

    @defer.inlineCallbacks
    def test_a_host_name_is_verified_too(self):
        """C{localhost} is in the certificate: connected by name."""
        server = self.server()
        self.connect(tls_settings(server, host="localhost"))
        self.assertTrue((yield self.wait_for(lambda: self.ups)))

    @defer.inlineCallbacks
    def test_a_certificate_of_another_ca_is_one_line_the_backoff_and_nothing_sent(self):
        """
        The server's certificate does not chain to redis_tls_ca: one line
        names the name and the CA, attempts follow the capped backoff, and
        the server never receives a command.
        """
        server = self.server()
        server.client().config_resetstat()  # the start-up check's PING
        other = str(self.certificates.other_ca)
        writer = RedisWriter(tls_settings(server, tls_ca=other), 1000, reactor)
        writer.startService()
        self.addCleanup(writer.stopService)
        writer.push(writer.queue("q", None), b"secret")
        yield sleep(2.0)  # the number of attempts in this time is what is tested
        self.assertEqual(writer.delivered, 0)
        self.assertEqual(
            writer.problem,
            f"Redis at 127.0.0.1:{server.port} presented a TLS certificate (for the name "
            f"'127.0.0.1') that does not verify against the CA certificates in redis_tls_ca {other}")
        self.assertEqual(len(self.logs.lines("warn")), 1, self.logs.lines())
        attempts = writer._connection.attempts
        self.assertTrue(3 <= attempts <= 8, attempts)  # 0.1, 0.2, 0.4, 0.8 s apart ...
        stats = server.client().info("commandstats")
        self.assertFalse([name for name in stats if name in (
            "cmdstat_ping", "cmdstat_lpush", "cmdstat_multi")], stats)

    @defer.inlineCallbacks
    def test_a_name_the_certificate_does_not_hold_is_refused(self):
        """redis_tls_server_name that the certificate lacks: refused, and the line says which."""
        server = self.server()
        connection = self.connect(tls_settings(server, tls_server_name="redis.example"))
        refused = yield self.wait_for(lambda: "not valid for the name" in (connection.problem or ""))
        self.assertTrue(refused, connection.problem)
        self.assertEqual(self.ups, [])
        self.assertEqual(
            connection.problem,
            f"Redis at 127.0.0.1:{server.port} presented a TLS certificate that is not valid for "
            "the name 'redis.example'; set redis_tls_server_name to a name the certificate holds")

    @defer.inlineCallbacks
    def test_a_server_that_wants_a_client_certificate(self):
        """tls-auth-clients yes: refused without one (one line), connected with one."""
        server = self.server(auth_clients="yes")
        without = self.connect(tls_settings(server))
        refused = yield self.wait_for(lambda: "TLS" in (without.problem or ""))
        self.assertTrue(refused, without.problem)
        self.assertEqual(self.ups, [])
        self.assertIn(f"Redis at 127.0.0.1:{server.port} ", without.problem)
        self.assertIn("TLS", without.problem)
        yield without.stop()
        self.connect(tls_settings(server, tls_cert=str(self.certificates.client_cert),
                                  tls_key=str(self.certificates.client_key)))
        self.assertTrue((yield self.wait_for(lambda: self.ups)))

    @defer.inlineCallbacks
    def test_sentinels_that_listen_with_tls_are_asked_over_tls(self):
        """A TLS Sentinel names a TLS master: both connections verified, up."""
        master = self.server()
        sentinel = TLSRedisServer(
            self.certificates, "no", workdir=self.base / "sentinel",
            config_file=sentinel_config(self.base / "sentinel", master.port),
            extra_args=["--sentinel", "--tls-replication", "yes"])
        sentinel.start()
        self.addCleanup(sentinel.cleanup)
        connection = self.connect(tls_settings(
            None, host=None, port=None, tls_ca=str(self.certificates.ca),
            sentinels=(("127.0.0.1", sentinel.port),), sentinel_master=MASTER_NAME))
        self.assertTrue((yield self.wait_for(lambda: self.ups)))
        self.assertEqual(connection.describe(),
                         f"127.0.0.1:{master.port} (master {MASTER_NAME} per Sentinel)")

    @defer.inlineCallbacks
    def test_verification_off_accepts_a_certificate_of_any_ca(self):
        """redis_tls_verify = false: connected although nothing verifies."""
        server = self.server()
        self.connect(tls_settings(server, tls_ca=str(self.certificates.other_ca),
                                  tls_server_name="redis.example", tls_verify=False))
        self.assertTrue((yield self.wait_for(lambda: self.ups)))


# -- the daemon ---------------------------------------------------------------------


@needs_tls_server
def test_the_daemon_delivers_over_tls_with_a_client_certificate(tmp_path, observer_factory):
    """The redis_tls* keys reach the connection: a file announced over TLS."""
    certificates = Certificates(tmp_path / "certs")
    server = TLSRedisServer(certificates, "yes", workdir=tmp_path / "server").start()
    try:
        directory = tmp_path / "in"
        directory.mkdir()
        (directory / "present.csv").write_bytes(b"x")
        config = write_config(tmp_path, {"s": {"active": "true", "directory": directory, "queue": "q"}}, {
            "redis_server": "127.0.0.1", "redis_port": server.port, "redis_tls": "true",
            "redis_tls_ca": certificates.ca, "redis_tls_cert": certificates.client_cert,
            "redis_tls_key": certificates.client_key})
        observer = observer_factory(config).start()
        client = server.client()
        assert wait_until(lambda: client.llen("q") >= 1, 10), "nothing announced over TLS"
        assert b'"filename": "present.csv"' in client.rpop("q")
        assert "redis_tls_verify" not in observer.output()
    finally:
        server.cleanup()


def test_an_unusable_ca_file_is_a_configuration_error(tmp_path, observer_factory):
    """A CA file that does not exist: one line, exit status 78, before anything starts."""
    config = write_config(tmp_path, {"s": {"active": "true", "directory": tmp_path, "queue": "q"}}, {
        "redis_server": "127.0.0.1", "redis_port": 1, "redis_tls": "true",
        "redis_tls_ca": tmp_path / "absent.pem"})
    observer = observer_factory(config)
    observer.start(wait_ready=False)
    assert observer.wait(15) == 78
    assert observer.lines == [
        f"dirobserver: {config}: redis_tls_ca {tmp_path / 'absent.pem'}: No such file or directory"]


def test_verification_off_is_a_warning_at_every_start(tmp_path, observer_factory):
    """redis_tls_verify = false starts, and says at start that nothing is verified."""
    config = write_config(tmp_path, {"s": {"active": "true", "directory": tmp_path, "queue": "q"}}, {
        "redis_server": "127.0.0.1", "redis_port": 1, "redis_tls": "true",
        "redis_tls_verify": "false"})
    observer = observer_factory(config).start(wait_ready=False)
    line = observer.wait_for_line("redis_tls_verify", timeout=10)
    assert "NOT verified" in line and "#warn]" in line, line
    # Signals are handled once the reactor runs: after the first attempt failed.
    observer.wait_for_line("is unreachable (connection refused)", timeout=10)
    observer.terminate()
    assert observer.wait() == 0
