"""
Queue shapes: the commands a batch becomes, run against a real valkey-server.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import txredisapi
from twisted.internet import defer, reactor
from twisted.trial import unittest

from dirobserver.announce.event import CREATED, EXISTS
from dirobserver.config.settings import RedisSettings
from dirobserver.redis.connection import RedisConnection, client_endpoint
from dirobserver.redis.queue_types import LIST, ListQueue, StreamQueue, queue_type_for
from tests.kit import RedisServer

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


class Connected:
    """A connected protocol (C{self.proto}) and a client of a real server, per test."""

    @defer.inlineCallbacks
    def setUp(self):
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        settings = RedisSettings(host="127.0.0.1", port=self.server.port, unix_socket=None,
                                 password=None, db=None, timeout=1.0)
        up: defer.Deferred = defer.Deferred()
        connection = RedisConnection(
            settings, up.callback, lambda: None, lambda: 0, clock=reactor,
            endpoint_factory=lambda: client_endpoint(reactor, settings),
        )
        connection.start()
        self.addCleanup(connection.stop)
        self.proto = yield up.addTimeout(5, reactor)
        self.client = self.server.client()


class ListShapeTests(Connected, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_batch_is_one_transaction_oldest_first_with_its_counter(self):
        """LPUSH keeps the batch oldest-first for BRPOP; INCRBY adds its size."""
        reply = yield LIST.send(self.proto, "q", "c", [b"e1", b"e2", b"e3"])
        self.assertEqual(reply, [3, 3])
        reply = yield LIST.send(self.proto, "q", "c", [b"e4"])
        self.assertEqual(reply, [4, 4])
        self.assertEqual([self.client.rpop("q") for _ in range(4)], [b"e1", b"e2", b"e3", b"e4"])
        self.assertEqual(self.client.get("c"), b"4")

    @defer.inlineCallbacks
    def test_no_counter_no_incrby(self):
        """Without a counter the transaction holds the LPUSH only."""
        self.client.config_resetstat()
        reply = yield LIST.send(self.proto, "q", None, [b"only"])
        self.assertEqual(reply, [1])
        self.assertNotIn("cmdstat_incrby", self.client.info("commandstats"))

    @defer.inlineCallbacks
    def test_a_refused_push_shows_in_the_exec_reply(self):
        """WRONGTYPE: the EXEC reply carries the error of the push (the writer keeps the batch)."""
        self.client.set("q", "a string")
        reply = yield LIST.send(self.proto, "q", "c", [b"e"])
        self.assertIsInstance(reply[0], Exception)
        self.assertIn("WRONGTYPE", str(reply[0]))

    @defer.inlineCallbacks
    def test_length_is_the_list_length(self):
        """length() is LLEN, as an int."""
        self.client.lpush("q", b"a", b"b")
        length = yield LIST.length(self.proto, "q")
        self.assertEqual(length, 2)
        self.assertEqual((yield LIST.length(self.proto, "absent")), 0)

    def test_the_encoder_makes_the_json_event(self):
        """A list holds the event's JSON bytes, made for one directory."""
        encode = ListQueue().encoder("/srv/in")
        item = encode("a b.csv", CREATED, 12.5)
        self.assertIsInstance(item, bytes)
        self.assertEqual(json.loads(item), {"directory": "/srv/in", "filename": "a b.csv",
                                            "event": "created", "event_timestamp": 12.5})


class StreamShapeTests(Connected, unittest.TestCase):
    @defer.inlineCallbacks
    def test_each_event_is_one_entry_with_the_four_fields_and_the_counter_counts(self):
        """XADD per event, oldest first, the JSON's four values (a name's own bytes)."""
        shape = StreamQueue()
        encode = shape.encoder("/srv/in")
        batch = [encode("a b.csv", CREATED, 12.5), encode("\udcff.dat", EXISTS, 13.25)]
        reply = yield shape.send(self.proto, "s", "c", batch)
        self.assertEqual(len(reply), 3)
        self.assertEqual(reply[2], 2)
        entries = self.client.xrange("s")
        self.assertEqual([fields for _id, fields in entries], [
            {b"directory": b"/srv/in", b"filename": b"a b.csv", b"event": b"created",
             b"event_timestamp": b"12.5"},
            {b"directory": b"/srv/in", b"filename": b"\xff.dat", b"event": b"exists",
             b"event_timestamp": b"13.25"},
        ])
        self.assertEqual([entry_id.decode() for entry_id, _ in entries], reply[:2])
        self.assertEqual(self.client.get("c"), b"2")

    @defer.inlineCallbacks
    def test_maxlen_trims_approximately_on_every_xadd(self):
        """MAXLEN ~ n: the stream stays near n entries (whole nodes are trimmed)."""
        shape = StreamQueue(maxlen=10)
        encode = shape.encoder("/d")
        for round_ in range(5):
            yield shape.send(self.proto, "s", None, [encode(f"f{round_}-{i}", CREATED, 1.0)
                                                      for i in range(100)])
        length = self.client.xlen("s")
        self.assertLess(length, 500)
        self.assertGreaterEqual(length, 10)
        self.assertEqual(self.client.xrevrange("s", count=1)[0][1][b"filename"], b"f4-99")
        self.client.delete("s")
        yield StreamQueue().send(self.proto, "s", None, [encode(f"g{i}", CREATED, 1.0)
                                                         for i in range(300)])
        self.assertEqual(self.client.xlen("s"), 300)

    @defer.inlineCallbacks
    def test_a_replica_refusal_is_the_reply_not_execabort(self):
        """Refused while queued (READONLY): the transaction fails with that refusal."""
        self.client.execute_command("REPLICAOF", "127.0.0.1", "1")
        try:
            with self.assertRaises(Exception) as caught:
                yield StreamQueue().send(self.proto, "s", None, [StreamQueue().encoder("/d")(
                    "f", CREATED, 1.0)])
            self.assertTrue(str(caught.exception).startswith("READONLY"), caught.exception)
        finally:
            self.client.execute_command("REPLICAOF", "NO", "ONE")

    @defer.inlineCallbacks
    def test_length_is_the_backlog_of_the_slowest_group(self):
        """
        No stream: 0.  No group: XLEN.  Groups: the largest lag + pending
        (entries not delivered yet, and delivered without XACK).
        """
        shape = StreamQueue()
        self.assertEqual((yield shape.length(self.proto, "s")), 0)
        encode = shape.encoder("/d")
        yield shape.send(self.proto, "s", None, [encode(f"f{i}", CREATED, 1.0) for i in range(10)])
        self.assertEqual((yield shape.length(self.proto, "s")), 10)
        self.client.xgroup_create("s", "fast", id="0")
        self.client.xgroup_create("s", "slow", id="0")
        read = self.client.xreadgroup("fast", "w1", {"s": ">"}, count=10)
        self.client.xack("s", "fast", *[entry_id for entry_id, _ in read[0][1]])
        self.client.xreadgroup("slow", "w1", {"s": ">"}, count=3)  # 3 pending, 7 not delivered
        self.assertEqual((yield shape.length(self.proto, "s")), 10)
        self.client.xgroup_destroy("s", "slow")
        self.assertEqual((yield shape.length(self.proto, "s")), 0)
        self.client.set("k", "v")
        # XINFO GROUPS on a string: WRONGTYPE, an error Redis reports, passed on.
        with self.assertRaises(txredisapi.ResponseError):
            yield shape.length(self.proto, "k")

    def test_sections_get_their_shape(self):
        """queue_type picks the shape; a stream's MAXLEN is part of it."""
        section = SimpleNamespace(queue_type="list", stream_maxlen=0)
        self.assertIs(queue_type_for(section), LIST)
        section = SimpleNamespace(queue_type="stream", stream_maxlen=5)
        self.assertEqual(queue_type_for(section), StreamQueue(5))
        self.assertNotEqual(queue_type_for(section), StreamQueue(6))
