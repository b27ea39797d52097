"""
Batches in doubt (L{dirobserver.redis.in_doubt}): after a round's deadline
passed, a batch with record entries is sent again only if Redis says, on the
next connection and before any round, that its transaction did not run.

The rounds are driven by a C{Clock}, over the real protocol on string
transports: what the observer writes is read back as commands, and Redis's
replies are fed in as bytes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial import unittest

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.held_bound import HeldBound
from dirobserver.redis.held_events import HeldQueue
from dirobserver.redis.in_doubt import batch_ran, parse_client_info
from dirobserver.redis.protocol import RespFactory, RespProtocol, encode_command, parse_reply
from dirobserver.redis.queue_types import LIST
from dirobserver.redis.record import HeldRecords
from dirobserver.redis.rounds import Rounds
from tests.kit.log_capture import LogCapture

TIMEOUT = 2.0
KEY = "q:announced"


def bulk(text: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(text), text.encode())


def commands(transport: StringTransportWithDisconnection) -> list[list[str]]:
    """What was written on C{transport}, as commands (each an array of bulk strings)."""
    data, pos, out = transport.value(), 0, []
    while pos < len(data):
        command, pos = parse_reply(data, pos)
        out.append(command)
    return out


class InDoubtRounds(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.records = HeldRecords()
        self.bound = HeldBound(1000)
        settings = RedisSettings(host="127.0.0.1", port=6379, unix_socket=None, password=None, db=None,
                                 timeout=TIMEOUT)
        self.rounds = Rounds(settings, self.bound, self.clock, lambda problem: False, lambda: None,
                             records=self.records)
        self.rounds.doubts.wanted = True

    def connect(self, client_info: str | None = "id=7 addr=127.0.0.1:40000 laddr=127.0.0.1:6379") -> Any:
        """A new connection, as the writer makes it: the rounds' protocol, its identity asked."""
        proto = RespProtocol()
        proto.factory = RespFactory()
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.rounds.proto = proto
        # As the writer hears of a lost connection: at once, before the
        # commands in flight fail.
        proto.whenDisconnected().addCallback(lambda _: setattr(self.rounds, "proto", None))
        self.rounds.doubts.identify(proto)
        self.assertEqual(commands(transport), [["CLIENT", "INFO"]])
        proto.dataReceived(bulk(client_info) if client_info else b"-ERR unknown subcommand\r\n")
        transport.clear()
        return proto, transport

    def push(self, q: HeldQueue, name: str, value: str) -> None:
        """Hold one event with its record entry (as L{RedisWriter.push} does)."""
        entry = (name.encode(), value.encode())
        q.pending.append(b'{"filename": "%s"}' % name.encode())
        if q.record_key is not None:
            q.pending_entries.append(entry)
            self.records.hold(q.record_key, [entry])
        self.bound.held += 1
        q.record(1, "s", "created", None)
        self.rounds.line_up(q)

    def lost_round(self, q: HeldQueue, names: list[str]) -> Any:
        """The first connection sends a batch of C{names}, and no reply comes within the deadline."""
        proto, transport = self.connect()
        for i, name in enumerate(names):
            self.push(q, name, f"1:{i + 10}:100.5")
        self.clock.advance(0)
        sent = commands(transport)
        self.assertEqual([c[0] for c in sent], ["MULTI", "LPUSH", "HSET", "EXEC"])
        self.clock.advance(TIMEOUT)  # the deadline passes: the connection is dropped
        self.assertFalse(transport.connected)
        self.assertIsNone(self.rounds.proto)
        return proto

    def answer_round(self, proto: RespProtocol, queued: int) -> None:
        """Redis runs the transaction sent (C{queued} commands between MULTI and EXEC)."""
        proto.dataReceived(b"+OK\r\n" + b"+QUEUED\r\n" * queued + b"*%d\r\n" % queued + b":1\r\n" * queued)

    def tearDown(self) -> None:
        self.rounds.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_batch_that_ran_is_not_sent_again(self) -> None:
        """The record holds the values sent: delivered, counted once, not resent."""
        logs = LogCapture(self)
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a", "b"])
        proto, transport = self.connect(client_info="id=9 addr=127.0.0.1:40001")
        self.rounds.flush()
        self.assertEqual(commands(transport), [
            ["CLIENT", "KILL", "ID", "7", "ADDR", "127.0.0.1:40000"],  # the old connection's
            ["TYPE", "q"],
            ["HMGET", KEY, "a", "b"],
        ])
        transport.clear()
        proto.dataReceived(b":0\r\n+list\r\n*2\r\n" + bulk("1:10:100.5") + bulk("1:11:100.5"))
        self.clock.advance(0)
        self.assertEqual(commands(transport), [])
        self.assertEqual((self.rounds.delivered, self.bound.held, q.in_flight, q.scheduled), (2, 0, None, False))
        self.assertEqual(self.records.count(), 0)
        self.assertEqual(self.rounds.delivered_by, {("s", "created"): 2})
        said = [line for line in logs.lines("info") if "had reached it" in line]
        self.assertEqual(said, ["2 events sent before the connection to Redis at 127.0.0.1:6379 was lost "
                                "had reached it (their record says so): not sent again"])

    def test_a_field_twice_in_the_batch_holds_its_last_value_and_that_is_enough(self) -> None:
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a", "a"])
        proto, transport = self.connect()
        self.rounds.flush()
        proto.dataReceived(b":1\r\n+list\r\n*2\r\n" + bulk("1:11:100.5") + bulk("1:11:100.5"))
        self.assertEqual(self.rounds.delivered, 2)

    def test_a_batch_that_did_not_run_is_sent_again_after_the_check_with_what_came_since(self) -> None:
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a"])
        proto, transport = self.connect()
        self.push(q, "later", "1:99:101.0")  # pushed meanwhile: waits for the check
        self.rounds.flush()
        self.clock.advance(0)
        self.assertEqual([c[0] for c in commands(transport)], ["CLIENT", "TYPE", "HMGET"])
        transport.clear()
        proto.dataReceived(b":0\r\n+none\r\n*1\r\n$-1\r\n")  # no record: it did not run
        self.assertEqual(commands(transport)[1], ["LPUSH", "q", '{"filename": "a"}'])  # the same batch
        self.assertEqual(self.rounds.delivered, 0)
        self.answer_round(proto, 2)
        self.assertEqual(self.rounds.delivered, 1)
        self.clock.advance(0)
        self.answer_round(proto, 2)  # then the one pushed meanwhile
        self.assertEqual((self.rounds.delivered, self.bound.held), (2, 0))

    def test_a_record_that_cannot_be_read_leaves_the_batch_to_be_sent_again(self) -> None:
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a"])
        proto, transport = self.connect()
        self.rounds.flush()
        transport.clear()
        proto.dataReceived(b":0\r\n+list\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
        self.assertEqual([c[0] for c in commands(transport)], ["MULTI", "LPUSH", "HSET", "EXEC"])
        self.answer_round(proto, 2)
        self.assertEqual(self.rounds.delivered, 1)

    def test_an_unanswered_check_drops_the_connection_and_the_next_one_asks_again(self) -> None:
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a"])
        proto, transport = self.connect(client_info="id=9 addr=127.0.0.1:40001")
        self.rounds.flush()
        self.clock.advance(TIMEOUT)
        self.assertFalse(transport.connected)
        self.assertIsNone(self.rounds.proto)
        proto, transport = self.connect()
        self.rounds.flush()
        # Still the connection that sent the batch, not the one that only asked.
        self.assertEqual(commands(transport)[0], ["CLIENT", "KILL", "ID", "7", "ADDR", "127.0.0.1:40000"])
        proto.dataReceived(b":0\r\n+none\r\n*1\r\n" + bulk("1:10:100.5"))
        self.assertEqual(self.rounds.delivered, 1)

    def test_without_the_identity_the_record_alone_decides(self) -> None:
        q = HeldQueue("q", None, LIST, KEY)
        proto, transport = self.connect(client_info=None)  # CLIENT INFO refused
        self.push(q, "a", "1:10:100.5")
        self.clock.advance(0)
        self.clock.advance(TIMEOUT)
        self.assertIsNone(self.rounds.proto)
        proto, transport = self.connect()
        self.rounds.flush()
        self.assertEqual(commands(transport), [["TYPE", "q"], ["HMGET", KEY, "a"]])
        proto.dataReceived(b"+list\r\n*1\r\n" + bulk("1:10:100.5"))
        self.assertEqual(self.rounds.delivered, 1)

    def test_a_record_written_while_the_queue_refused_the_pushes_is_not_believed(self) -> None:
        """
        The queue's key has the wrong type: the HSET ran, the pushes did not
        (Redis rolls nothing back), and the reply was never seen: sent again.
        """
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a"])
        proto, transport = self.connect()
        self.rounds.flush()
        transport.clear()
        proto.dataReceived(b":0\r\n+string\r\n*1\r\n" + bulk("1:10:100.5"))
        self.assertEqual(self.rounds.delivered, 0)
        self.assertEqual([c[0] for c in commands(transport)], ["MULTI", "LPUSH", "HSET", "EXEC"])
        self.answer_round(proto, 2)

    def test_another_server_kills_no_client(self) -> None:
        """After a reload to another server, its client ids are not the old connection's."""
        q = HeldQueue("q", None, LIST, KEY)
        self.lost_round(q, ["a"])
        self.rounds.doubts.forget_sender()  # as RedisWriter.reconfigure does
        proto, transport = self.connect()
        self.rounds.flush()
        self.assertEqual(commands(transport), [["TYPE", "q"], ["HMGET", KEY, "a"]])
        proto.dataReceived(b"+list\r\n*1\r\n$-1\r\n")
        self.answer_round(proto, 2)
        self.assertEqual(self.rounds.delivered, 1)

    def test_a_queue_without_a_record_is_sent_again_unasked(self) -> None:
        """At least once: nothing can tell whether it ran."""
        q = HeldQueue("plain", None, LIST)
        self.lost_round_plain(q)
        proto, transport = self.connect()
        self.rounds.flush()
        self.assertEqual([c[0] for c in commands(transport)], ["MULTI", "LPUSH", "EXEC"])
        self.answer_round(proto, 1)
        self.assertEqual(self.rounds.delivered, 1)

    def lost_round_plain(self, q: HeldQueue) -> None:
        proto, transport = self.connect()
        self.push(q, "a", "")
        self.clock.advance(0)
        self.clock.advance(TIMEOUT)
        self.assertIsNone(self.rounds.proto)

    def test_a_lost_connection_puts_the_batch_in_doubt_too(self) -> None:
        q = HeldQueue("q", None, LIST, KEY)
        proto, transport = self.connect()
        self.push(q, "a", "1:10:100.5")
        self.clock.advance(0)
        transport.loseConnection()
        self.assertIsNone(self.rounds.proto)
        proto, transport = self.connect()
        self.rounds.flush()
        self.assertEqual([c[0] for c in commands(transport)], ["CLIENT", "TYPE", "HMGET"])
        proto.dataReceived(b":0\r\n+none\r\n*1\r\n$-1\r\n")
        self.assertEqual(commands(transport)[3][0], "MULTI")
        self.answer_round(proto, 2)
        self.assertEqual(self.rounds.delivered, 1)


class Decision(unittest.TestCase):
    def test_batch_ran(self) -> None:
        entries = [(b"a", b"1:2:3.0"), (b"b", b"1:3:3.0")]
        self.assertTrue(batch_ran(entries, ["1:2:3.0", None]))
        self.assertTrue(batch_ran(entries, [None, b"1:3:3.0"]))
        self.assertFalse(batch_ran(entries, ["1:2:2.0", None]))  # an older announcement
        self.assertFalse(batch_ran(entries, [None, None]))
        self.assertFalse(batch_ran(entries, ["1:2:3.0"]))  # not a reply to these fields
        self.assertFalse(batch_ran(entries, Exception("WRONGTYPE")))

    def test_parse_client_info(self) -> None:
        self.assertEqual(parse_client_info("id=12 addr=10.0.0.1:5555 laddr=10.0.0.2:6379 fd=8 name= age=0\n"),
                         ("12", "10.0.0.1:5555"))
        self.assertIsNone(parse_client_info("nothing here"))
        self.assertIsNone(parse_client_info(None))

    def test_encoded_commands_read_back(self) -> None:
        data = encode_command(["HMGET", KEY, b"a"])
        self.assertEqual(parse_reply(data, 0), (["HMGET", KEY, "a"], len(data)))
