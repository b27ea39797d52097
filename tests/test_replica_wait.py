"""
C{redis_wait_replicas}: the writer's rounds wait for replicas, against a real
master and a real replica (valkey-server, started per test).

The replica is SIGSTOPped to make it lag: the master then gets one round and
no more until the C{WAIT} gives up, which is the bound on what a failover
can lose.  An ACL user without C{WAIT} is said once and delivers all the same.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer, reactor
from twisted.python.failure import Failure
from twisted.trial import unittest
from txredisapi import ResponseError

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.replica_wait import ReplicaWait
from dirobserver.redis.writer import RedisWriter
from tests.kit import RedisServer
from tests.kit.log_capture import LogCapture
from tests.kit.waiting import sleep, wait_for

pytestmark = pytest.mark.process

SHORT = "replicas acknowledged a round within"
AGAIN = "replicas acknowledge each round again"


class ReplicaWaitTests(unittest.TestCase):
    def setUp(self) -> None:
        self.master = RedisServer()
        self.addCleanup(self.master.cleanup)
        self.master.start()

    def replica(self) -> RedisServer:
        """A replica of the master, in sync."""
        replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.addCleanup(replica.cleanup)
        replica.start()
        return replica

    def in_sync(self) -> bool:
        info = self.master.client().info("replication")
        return info.get("connected_slaves") == 1 and info["slave0"]["state"] == "online"

    def make_writer(self, wait_timeout: float, username: str | None = None,
                    password: str | None = None) -> RedisWriter:
        settings = RedisSettings(host="127.0.0.1", port=self.master.port, unix_socket=None,
                                 password=password, username=username, db=None, timeout=10.0,
                                 wait_replicas=1, wait_timeout=wait_timeout)
        writer = RedisWriter(settings, 100_000, reactor)
        self.addCleanup(lambda: writer.stopService() if writer.running else None)
        return writer

    def wait_for(self, predicate) -> defer.Deferred:
        return wait_for(predicate, timeout=20.0)

    def on_master(self) -> int:
        return self.master.client().llen("q")

    @defer.inlineCallbacks
    def test_a_lagging_replica_holds_the_next_round_back_until_the_wait_ends(self):
        """
        With the replica stopped, a round's WAIT holds the next round back
        for redis_wait_timeout: the master has one round more than the
        replica, not everything pushed since; then delivery goes on (said
        once) and, the replica back, says so.
        """
        logs = LogCapture(self)
        replica = self.replica()
        synced = yield self.wait_for(self.in_sync)
        self.assertTrue(synced)
        writer = self.make_writer(wait_timeout=3.0)
        writer.startService()
        yield writer.when_connected()
        q = writer.queue("q", None)
        writer.push(q, b"first")
        delivered = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(delivered)
        self.assertEqual(writer.replica_waits_short, 0)  # the replica had it

        replica.pause()
        writer.push(q, b"lagging")  # a round whose WAIT the stopped replica cannot answer
        applied = yield self.wait_for(lambda: self.on_master() == 2)
        self.assertTrue(applied)
        for i in range(100):
            writer.push(q, b"later%d" % i)
        # Until the WAIT ends (3 s), the later events stay in the writer.
        lengths = []
        while not any(SHORT in line for line in logs.lines("warn")):
            lengths.append(self.on_master())
            yield sleep(0.05)  # the sampling interval
        self.assertGreater(len(lengths), 20)  # sampled throughout the wait
        self.assertEqual(max(lengths), 2)
        self.assertEqual(writer.delivered, 2)  # acknowledged at the round's end, its WAIT's
        # Then the next round goes (its own WAIT ends short too): nothing lost.
        delivered = yield self.wait_for(lambda: writer.delivered == 102)
        self.assertTrue(delivered)
        self.assertGreaterEqual(writer.replica_waits_short, 1)

        replica.resume()
        writer.push(q, b"back")
        again = yield self.wait_for(lambda: any(AGAIN in line for line in logs.lines("info")))
        self.assertTrue(again, logs.lines())
        self.assertEqual(len([line for line in logs.lines("warn") if SHORT in line]), 1)
        self.assertEqual(self.on_master(), 103)

    @defer.inlineCallbacks
    def test_a_user_without_wait_is_said_once_and_delivers(self):
        """An ACL user refused WAIT: one error line, and every event delivered."""
        logs = LogCapture(self)
        self.master.client().execute_command("ACL", "SETUSER", "pusher", "on", ">secret", "~*", "+@all", "-wait")
        writer = self.make_writer(wait_timeout=1.0, username="pusher", password="secret")
        writer.startService()
        yield writer.when_connected()
        q = writer.queue("q", None)
        for i in range(5):
            writer.push(q, b"e%d" % i)
            delivered = yield self.wait_for(lambda i=i: writer.delivered == i + 1)
            self.assertTrue(delivered)
        refused = [line for line in logs.lines("error") if "Redis refused WAIT" in line]
        self.assertEqual(len(refused), 1, logs.lines())
        self.assertIn("NOPERM", refused[0])
        self.assertEqual(self.on_master(), 5)


class RefusalTests(unittest.TestCase):
    """What a refused WAIT means (the connection is only an identity here)."""

    def setUp(self) -> None:
        self.logs = LogCapture(self)
        settings = RedisSettings(host="h", port=1, unix_socket=None, password=None, db=None, timeout=10.0,
                                 wait_replicas=1, wait_timeout=1.0)
        self.wait = ReplicaWait(settings)

    def refuse(self, proto: object, text: str) -> None:
        self.wait.answered(False, Failure(ResponseError(text)), proto)  # type: ignore[arg-type]

    def test_a_refusal_for_good_stops_waiting_on_that_connection_only(self):
        old, new = object(), object()
        self.refuse(old, "NOPERM User pusher has no permissions to run the 'wait' command")
        self.refuse(old, "NOPERM User pusher has no permissions to run the 'wait' command")
        self.assertFalse(self.wait.wanted(old))  # type: ignore[arg-type]
        self.assertTrue(self.wait.wanted(new))  # type: ignore[arg-type]
        self.refuse(new, "NOPERM User pusher has no permissions to run the 'wait' command")
        self.assertEqual(len(self.logs.lines("error")), 1)  # the same reason is said once

    def test_a_demoted_masters_refusal_is_left_to_its_readonly(self):
        proto = object()
        # valkey 8's words.
        self.refuse(proto, "ERR WAIT cannot be used with replica instances. Please also note that if a "
                           "replica is configured to be writable (which is not the default) writes to "
                           "replicas are just local and are not propagated.")
        self.assertTrue(self.wait.wanted(proto))  # type: ignore[arg-type]
        self.assertEqual(self.logs.lines("error"), [])

    def test_without_replicas_to_wait_for_no_round_waits(self):
        settings = RedisSettings(host="h", port=1, unix_socket=None, password=None, db=None, timeout=10.0)
        self.assertFalse(ReplicaWait(settings).wanted(object()))  # type: ignore[arg-type]
