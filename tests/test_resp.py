"""The lean RESP protocol (resp.py) against a real valkey-server."""

from __future__ import annotations

import pytest
import txredisapi
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from dirobserver.redis.protocol import RespProtocol, encode_command, parse_reply
from tests.kit import RedisServer


class ParserTests(unittest.SynchronousTestCase):
    def test_every_reply_kind(self):
        data = (b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n-ERR wrong\r\n"
                b"*3\r\n:1\r\n$2\r\n\xff\xfe\r\n*1\r\n-WRONGTYPE no\r\n")
        replies, pos = [], 0
        while pos < len(data):
            reply, pos = parse_reply(data, pos)
            replies.append(reply)
        self.assertEqual(replies[:5], ["OK", 42, "hello", None, None])
        self.assertIsInstance(replies[5], txredisapi.ResponseError)
        self.assertEqual(replies[6][:2], [1, b"\xff\xfe"])  # not UTF-8: stays bytes
        self.assertIsInstance(replies[6][2][0], txredisapi.ResponseError)

    def test_a_reply_cut_anywhere_waits_for_the_rest(self):
        data = b"*2\r\n$5\r\nhello\r\n:7\r\n"
        for cut in range(1, len(data)):
            reply, pos = parse_reply(data[:cut], 0)
            self.assertEqual(pos, 0, cut)
        self.assertEqual(parse_reply(data, 0), (["hello", 7], len(data)))

    def test_arrays_of_bulk_strings_read_as_any_reply_cut_anywhere(self):
        # The shapes of an HSCAN reply (a cursor, then fields and values)
        # and of an HMGET one (absent fields are null), empty strings and
        # names that are not UTF-8 among them.
        data = (b"*2\r\n$3\r\n128\r\n*4\r\n$1\r\na\r\n$7\r\n1:2:3.5\r\n$2\r\n\xff\xfe\r\n$0\r\n\r\n"
                b"*4\r\n$-1\r\n$1\r\nv\r\n:3\r\n$-1\r\n")
        first, pos = parse_reply(data, 0)
        self.assertEqual(first, ["128", ["a", "1:2:3.5", b"\xff\xfe", ""]])
        second, end = parse_reply(data, pos)
        self.assertEqual((second, end), ([None, "v", 3, None], len(data)))
        for cut in range(pos + 1, len(data)):
            self.assertEqual(parse_reply(data[:cut], pos)[1], pos, cut)
        for cut in range(1, pos):
            self.assertEqual(parse_reply(data[:cut], 0)[1], 0, cut)

    def test_commands_are_encoded_as_bulk_strings(self):
        self.assertEqual(encode_command([b"LPUSH", "q", 3]),
                         b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1\r\n3\r\n")
        # Text and numbers before many bytes (an HSET of a batch's entries).
        self.assertEqual(encode_command(["HSET", "q:a", b"f\xff", b"1:2:3.5", "\u00e9", 7]),
                         b"*6\r\n$4\r\nHSET\r\n$3\r\nq:a\r\n$2\r\nf\xff\r\n$7\r\n1:2:3.5\r\n"
                         b"$2\r\n\xc3\xa9\r\n$1\r\n7\r\n")


@pytest.mark.process
class ServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)

    @defer.inlineCallbacks
    def connect(self):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.server.port)
        proto = yield connectProtocol(endpoint, RespProtocol())
        self.addCleanup(proto.transport.loseConnection)
        return proto

    @defer.inlineCallbacks
    def test_commands_and_a_pipelined_transaction(self):
        proto = yield self.connect()
        self.assertEqual((yield proto.execute_command("PING")), "PONG")
        replies = yield proto.pipeline([("MULTI",), ("LPUSH", "q", b"a", b"b"), ("INCRBY", "n", 2),
                                        ("EXEC",)])
        self.assertEqual(replies, ["OK", "QUEUED", "QUEUED", [2, 2]])
        self.assertEqual((yield proto.execute_command("LLEN", "q")), 2)
        big = [b"x" * 100] * 20000  # larger than one socket send
        replies = yield proto.pipeline([("LPUSH", "big", *big), ("LLEN", "big")])
        self.assertEqual(replies, [20000, 20000])

    @defer.inlineCallbacks
    def test_errors_fail_one_command_or_sit_in_the_list(self):
        proto = yield self.connect()
        yield proto.execute_command("SET", "s", "x")
        with self.assertRaises(txredisapi.ResponseError):
            yield proto.execute_command("LLEN", "s")
        replies = yield proto.pipeline([("MULTI",), ("LPUSH", "s", b"e"), ("INCRBY", "n", 1),
                                        ("EXEC",)])
        self.assertIsInstance(replies[3][0], txredisapi.ResponseError)
        self.assertEqual(replies[3][1], 1)

    @defer.inlineCallbacks
    def test_a_lost_connection_fails_what_waits(self):
        proto = yield self.connect()
        yield proto.execute_command("PING")
        blocked = proto.execute_command("BLPOP", "nothing", 0)
        gone = proto.whenDisconnected()
        self.server.kill()
        with self.assertRaises(txredisapi.ConnectionError):
            yield blocked
        self.assertIs((yield gone), proto)
        with self.assertRaises(txredisapi.ConnectionError):
            yield proto.execute_command("PING")


class NotRedis(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")


class NotRedisTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_server_that_is_not_redis_is_dropped(self):
        factory = protocol.Factory.forProtocol(NotRedis)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        proto = yield connectProtocol(endpoint, RespProtocol())
        with self.assertRaises(txredisapi.ConnectionError):
            yield proto.execute_command("PING")
