"""
Queue shapes: the commands a batch becomes, run against a real valkey-server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import RedisServer  # noqa: E402

from dirobserver.config import RedisSettings  # noqa: E402
from dirobserver.connection import RedisConnection, redis_endpoint  # noqa: E402
from dirobserver.events import CREATED  # noqa: E402
from dirobserver.shapes import LIST, ListShape  # noqa: E402


class ListShapeTests(unittest.TestCase):
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
            endpoint_factory=lambda: redis_endpoint(reactor, settings),
        )
        connection.start()
        self.addCleanup(connection.stop)
        self.proto = yield up.addTimeout(5, reactor)
        self.client = self.server.client()

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
        encode = ListShape().encoder("/srv/in")
        item = encode("a b.csv", CREATED, 12.5)
        self.assertIsInstance(item, bytes)
        self.assertEqual(json.loads(item), {"directory": "/srv/in", "filename": "a b.csv",
                                            "event": "created", "event_timestamp": 12.5})
