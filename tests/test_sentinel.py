"""
Finding the master through real Sentinels (one Sentinel here, no failover:
that is L{test_e2e_sentinel}'s), and what the connection says when it cannot.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.sentinel import SentinelRoute
from dirobserver.redis.writer import RedisWriter
from tests.kit import RedisServer, free_port
from tests.kit.cases import Connecting
from tests.kit.log_capture import LogCapture
from tests.kit.sentinel import MASTER_NAME, sentinel_server

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def sentinel_settings(*sentinels: RedisServer | int, **changes) -> RedisSettings:
    """Settings naming C{sentinels} (a server, or a port where nothing listens)."""
    addresses = tuple(("127.0.0.1", s if isinstance(s, int) else s.port) for s in sentinels)
    values = dict(host=None, port=None, unix_socket=None, password=None, db=None, timeout=1.0,
                  sentinels=addresses, sentinel_master=MASTER_NAME)
    values.update(changes)
    return RedisSettings(**values)


class SentinelTests(Connecting, unittest.TestCase):
    def setUp(self) -> None:
        self.logs = LogCapture(self)
        # A temporary directory, not trial's mktemp() (under pytest it
        # writes into the checkout).
        self.base = Path(tempfile.mkdtemp(prefix="dirobserver-test-"))
        self.addCleanup(shutil.rmtree, self.base, True)
        self.master = self.server("master")

    def server(self, name: str, *extra_args: str) -> RedisServer:
        server = RedisServer(workdir=self.base / name, extra_args=extra_args)
        server.start()
        self.addCleanup(server.cleanup)
        return server

    def sentinel(self, monitored: RedisServer, password: str | None = None) -> RedisServer:
        server = sentinel_server(self.base / f"sentinel-{free_port()}", monitored.port, password,
                                 quorum=1)
        server.start()
        self.addCleanup(server.cleanup)
        return server

    @defer.inlineCallbacks
    def test_the_first_sentinel_that_answers_names_the_master_and_is_asked_first_next(self):
        """A dead Sentinel first, a live one next: connected to its master; the live one moves up."""
        live, dead = self.sentinel(self.master), free_port()
        connection = self.connect(sentinel_settings(dead, live))
        self.assertTrue((yield self.wait_for(lambda: self.ups)))
        self.assertIsInstance(self.route, SentinelRoute)
        self.assertEqual(self.route.sentinels, [("127.0.0.1", live.port), ("127.0.0.1", dead)])
        self.assertEqual(connection.describe(),
                         f"127.0.0.1:{self.master.port} (master {MASTER_NAME} per Sentinel)")
        yield self.ups[0].execute_command("SET", "k", "v")
        self.assertEqual(self.master.client().get("k"), b"v")
        self.assertEqual(self.logs.lines("warn"), [])

    @defer.inlineCallbacks
    def test_an_unknown_master_name_is_one_line_naming_every_sentinel(self):
        """No Sentinel names it: one line says what each one said; never up."""
        live, dead = self.sentinel(self.master), free_port()
        connection = self.connect(sentinel_settings(dead, live, sentinel_master="nope"))
        # Refused, and tried again (still one line).
        tried = yield self.wait_for(lambda: connection.attempts > 2
                                    and "named by no Sentinel" in (connection.problem or ""))
        self.assertTrue(tried, (connection.attempts, connection.problem))
        self.assertEqual(self.ups, [])
        self.assertEqual(
            connection.problem,
            f"Redis at master nope (Sentinel) was named by no Sentinel (Sentinel 127.0.0.1:{dead} "
            f"is unreachable (connection refused); Sentinel 127.0.0.1:{live.port} knows no master "
            "named 'nope')")
        self.assertEqual(len(self.logs.lines("warn")), 1, self.logs.lines())

    @defer.inlineCallbacks
    def test_a_sentinel_password_is_sent_and_its_absence_is_named(self):
        """requirepass on the Sentinel: NOAUTH names redis_sentinel_password; with it, up."""
        guarded = self.sentinel(self.master, password="s3cret")
        without = self.connect(sentinel_settings(guarded))
        refused = yield self.wait_for(lambda: "NOAUTH" in (without.problem or ""))
        self.assertTrue(refused, without.problem)
        self.assertIn("needs a password (NOAUTH) and redis_sentinel_password is not set",
                      without.problem)
        yield without.stop()
        self.connect(sentinel_settings(guarded, sentinel_password="s3cret"))
        self.assertTrue((yield self.wait_for(lambda: self.ups)))

    @defer.inlineCallbacks
    def test_a_node_named_that_is_not_a_master_is_refused_by_the_role_check(self):
        """The Sentinel names a replica: ROLE says so, and the attempt fails (and is retried)."""
        replica = self.server("replica", "--replicaof", "127.0.0.1", str(self.master.port))
        connection = self.connect(sentinel_settings(self.sentinel(replica)))
        tried = yield self.wait_for(lambda: connection.attempts > 2
                                    and "is not a master" in (connection.problem or ""))
        self.assertTrue(tried, (connection.attempts, connection.problem))
        self.assertEqual(self.ups, [])
        self.assertEqual(
            connection.problem,
            f"Redis at 127.0.0.1:{replica.port} (master {MASTER_NAME} per Sentinel) is not a "
            "master (ROLE says 'slave'); asking the Sentinels again")
        self.assertGreater(connection.attempts, 2)

    @defer.inlineCallbacks
    def test_readonly_leaves_the_node_and_writes_go_on_once_a_master_is_named(self):
        """
        The master turns replica under the writer: its next batch is refused
        with READONLY; the connection is dropped at once (no 1 s pause of a
        refused queue), ROLE keeps it off the replica, and once the node is a
        master again the batch is delivered.
        """
        settings = sentinel_settings(self.sentinel(self.master))
        writer = RedisWriter(settings, 1000, reactor)
        writer.startService()
        self.addCleanup(writer.stopService)
        q = writer.queue("q", None)
        writer.push(q, b"e1")
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 1)))
        client = self.master.client()
        client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        try:
            writer.push(q, b"e2")
            self.assertTrue((yield self.wait_for(lambda: any(
                "is not a master (ROLE says 'slave')" in line for line in self.logs.lines()))))
            lines = self.logs.lines("warn")
            self.assertIn("refused a write as a replica (READONLY", lines[0])
            self.assertFalse(any("Redis refused events" in line for line in lines), lines)
        finally:
            client.execute_command("REPLICAOF", "NO", "ONE")
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 2)))
        self.assertEqual(client.lrange("q", 0, -1), [b"e2", b"e1"])
        self.assertEqual(writer.reconnects, 1)
