"""
The batching Redis writer against a real valkey-server (started per test).

These run the real reactor (trial tests under pytest) and a real server
process, and inject the faults for real: the server not started yet,
SIGKILLed and restarted on the same port, SIGSTOPped (a Redis that does not
answer), a key of the wrong type.
"""

from __future__ import annotations

import re

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest

from dirobserver.announce.event import CREATED
from dirobserver.config.settings import RedisSettings
from dirobserver.redis.held_events import BATCH, HeldQueue
from dirobserver.redis.queue_types import LIST, StreamQueue
from dirobserver.redis.rounds import REFUSED_PAUSE
from dirobserver.redis.writer import RedisWriter
from dirobserver.util import stats
from tests.kit import RedisServer, command_calls, connections_received
from tests.kit.log_capture import LogCapture
from tests.kit.waiting import sleep

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


class WriterTestMixin:
    timeout_s = 1.0

    def setUp(self) -> None:
        self.server = RedisServer()
        self.addCleanup(self.server.cleanup)
        self.writers: list[RedisWriter] = []

    def make_writer(self, max_held: int = 100_000, password: str | None = None) -> RedisWriter:
        settings = RedisSettings(
            host="127.0.0.1",
            port=self.server.port,
            unix_socket=None,
            password=password,
            db=None,
            timeout=self.timeout_s,
        )
        writer = RedisWriter(settings, max_held, reactor)
        self.writers.append(writer)
        self.addCleanup(self._stop, writer)
        return writer

    def _stop(self, writer: RedisWriter) -> defer.Deferred:
        if writer.running:
            return writer.stopService()
        return defer.succeed(None)

    @defer.inlineCallbacks
    def wait_for(self, predicate, timeout: float = 10.0):
        for _ in range(int(timeout / 0.02)):
            if predicate():
                return True
            yield sleep(0.02)  # the polling interval
        return predicate()

    def contents(self, queue: str) -> list[bytes]:
        """The list oldest first (the writer LPUSHes)."""
        return list(reversed(self.server.client().lrange(queue, 0, -1)))


class DeliveryTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_events_arrive_in_order_with_counter(self):
        """Events reach their list oldest-first; the counter counts them."""
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        q = writer.queue("q:a", "c:a")
        payloads = [b"e%d" % i for i in range(5000)]
        for p in payloads:
            writer.push(q, p)
        ok = yield self.wait_for(lambda: writer.delivered == 5000)
        self.assertTrue(ok)
        self.assertEqual(self.contents("q:a"), payloads)
        self.assertEqual(int(self.server.client().get("c:a")), 5000)
        self.assertEqual(writer.held(), 0)

    @defer.inlineCallbacks
    def test_events_of_one_turn_go_in_one_lpush(self):
        """A burst pushed in one reactor turn costs one LPUSH, not one per event."""
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        yield writer.when_connected()
        self.server.client().config_resetstat()
        q = writer.queue("q:b", None)
        for i in range(1000):
            writer.push(q, b"x%d" % i)
        yield self.wait_for(lambda: writer.delivered == 1000)
        stats = self.server.client().info("commandstats")
        self.assertEqual(stats["cmdstat_lpush"]["calls"], 1)
        self.assertEqual(stats["cmdstat_exec"]["calls"], 1)

    @defer.inlineCallbacks
    def test_queues_are_independent_on_wrongtype(self):
        """A WRONGTYPE on one key holds back that queue only, until it is fixed."""
        self.server.start()
        self.server.client().set("q:bad", "a string")
        writer = self.make_writer()
        writer.startService()
        bad, good = writer.queue("q:bad", None), writer.queue("q:good", None)
        writer.push(bad, b"b1")
        writer.push(good, b"g1")
        yield self.wait_for(lambda: writer.delivered == 1)
        self.assertEqual(self.contents("q:good"), [b"g1"])
        self.assertEqual(writer.held(), 1)
        writer.push(good, b"g2")
        self.server.client().delete("q:bad")
        ok = yield self.wait_for(lambda: writer.delivered == 3)
        self.assertTrue(ok)
        self.assertEqual(self.contents("q:bad"), [b"b1"])
        self.assertEqual(self.contents("q:good"), [b"g1", b"g2"])

    @defer.inlineCallbacks
    def test_a_queue_whose_type_changed_gets_a_new_handle_and_its_length_follows(self):
        """
        A reload turns list q into a stream: a new handle, in the new shape;
        Redis refuses it while the key is a list; its length is the stream's.
        """
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        as_list = writer.queue("q", None)
        writer.push(as_list, b"old")
        yield self.wait_for(lambda: writer.delivered == 1)
        shape = StreamQueue()
        as_stream = writer.queue("q", None, shape)
        self.assertIsNot(as_stream, as_list)
        self.assertIs(writer.queue("q", None, StreamQueue()), as_stream)
        writer.push(as_stream, shape.encoder("/d")("f", CREATED, 1.0))
        # Redis was sent the XADD (and refused it: the key is a list).
        tried = yield self.wait_for(lambda: command_calls(self.server.client(), "xadd") >= 1)
        self.assertTrue(tried, "the stream's event was never sent")
        self.assertEqual(writer.held(), 1)  # WRONGTYPE: kept
        self.server.client().delete("q")
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 2)))
        self.assertEqual(self.server.client().xrange("q")[0][1][b"filename"], b"f")
        self.assertEqual((yield writer.queue_length("q")), 1)


class OutageTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_redis_down_at_start_then_started(self):
        """Held while Redis is down at start-up; delivered in order once it runs."""
        writer = self.make_writer()
        writer.startService()
        q = writer.queue("q:late", None)
        for i in range(100):
            writer.push(q, b"%d" % i)
        # An attempt to connect failed.
        failed = yield self.wait_for(lambda: "unreachable" in (writer.problem or ""))
        self.assertTrue(failed, writer.problem)
        self.assertFalse(writer.redis_up())
        self.assertEqual(writer.held(), 100)
        self.server.start()
        ok = yield self.wait_for(lambda: writer.delivered == 100)
        self.assertTrue(ok)
        self.assertEqual(self.contents("q:late"), [b"%d" % i for i in range(100)])

    @defer.inlineCallbacks
    def test_redis_killed_and_restarted_loses_nothing(self):
        """SIGKILL mid-stream, restart on the same port: no gap, order kept."""
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        q = writer.queue("q:k", None)
        for i in range(100):
            writer.push(q, b"before%d" % i)
        yield self.wait_for(lambda: writer.delivered == 100)
        self.server.kill()
        for i in range(500):
            writer.push(q, b"during%d" % i)
        # The loss was noticed and an attempt to reconnect failed.
        failed = yield self.wait_for(lambda: "unreachable" in (writer.problem or ""))
        self.assertTrue(failed, writer.problem)
        self.server.restart()  # empty: the restarted server kept nothing
        ok = yield self.wait_for(lambda: writer.held() == 0)
        self.assertTrue(ok)
        got = self.contents("q:k")
        during = [e for e in got if e.startswith(b"during")]
        self.assertEqual(during, [b"during%d" % i for i in range(500)])
        self.assertGreaterEqual(writer.reconnects, 1)

    @defer.inlineCallbacks
    def test_unanswering_redis_hits_the_deadline_and_resends(self):
        """
        A Redis that accepts but never answers (SIGSTOP): the round's deadline
        passes, the connection is dropped (a hung master is left, so that a
        reconnect or a Sentinel can find another), and after SIGCONT the batch
        is sent again: at least once.
        """
        logs = LogCapture(self)
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        yield writer.when_connected()
        q = writer.queue("q:slow", None)
        self.server.pause()
        writer.push(q, b"held")
        # The round's deadline passed, and the connection was given up.
        late = yield self.wait_for(lambda: any("did not answer within" in line
                                               for line in logs.lines("warn")))
        self.assertTrue(late, logs.lines())
        # The connection is aborted in the reactor's next turn.
        down = yield self.wait_for(lambda: not writer.redis_up())
        self.assertTrue(down)
        self.assertFalse(any("no answer in time" in line for line in logs.lines("warn")), logs.lines())
        self.assertEqual(writer.delivered, 0)
        self.server.resume()
        ok = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(ok)
        self.assertIn(b"held", self.contents("q:slow"))

    @defer.inlineCallbacks
    def test_max_held_bound_asks_for_a_listing_after_catch_up(self):
        """
        Past max_held, events are not held; the source is asked to relist once
        Redis has taken everything held.
        """

        class Source:
            relists = 0

            def relist(self):
                Source.relists += 1

        writer = self.make_writer(max_held=50)
        writer.startService()
        q = writer.queue("q:bound", None)
        source = Source()
        for i in range(200):
            writer.push(q, b"%d" % i, source)
        self.assertEqual(writer.held(), 50)
        self.assertEqual(writer.dropped, 150)
        self.assertEqual(Source.relists, 0)
        self.server.start()
        ok = yield self.wait_for(lambda: Source.relists == 1)
        self.assertTrue(ok)
        self.assertEqual(self.contents("q:bound"), [b"%d" % i for i in range(50)])

    @defer.inlineCallbacks
    def test_wrong_password_keeps_retrying(self):
        """A failed AUTH is not fatal: the writer retries until it succeeds."""
        self.server.start()
        self.server.client().config_set("requirepass", "right")
        writer = self.make_writer(password="wrong")
        writer.startService()
        q = writer.queue("q:auth", None)
        writer.push(q, b"x")
        refused = yield self.wait_for(lambda: "refused the password" in (writer.problem or ""))
        self.assertTrue(refused, writer.problem)
        self.assertFalse(writer.redis_up())
        self.server.client(password="right").config_set("requirepass", "wrong")
        ok = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(ok)


class NotReadyTests(WriterTestMixin, unittest.TestCase):
    """Redis answers, but not in a way that makes it usable: never "up"."""

    def setUp(self) -> None:
        super().setUp()
        self.logs = LogCapture(self)
        self.server.start()
        self.server.client().config_set("requirepass", "right")

    @defer.inlineCallbacks
    def test_password_needed_and_none_configured(self):
        """NOAUTH: never up, the problem says a password is needed, one line for several tries."""
        admin = self.server.client(password="right")
        before = connections_received(admin)
        writer = self.make_writer()
        writer.startService()
        up = writer.when_connected()
        writer.push(writer.queue("q:noauth", None), b"x")
        # Four tries, each a connection the server counts (ours is one).
        tried = yield self.wait_for(lambda: connections_received(admin) >= before + 5)
        self.assertTrue(tried, "the writer did not try again")
        self.assertFalse(writer.redis_up())
        self.assertFalse(up.called)
        self.assertIn("needs a password", writer.problem)
        self.assertIn(f":{self.server.port}", writer.problem)
        self.assertEqual((writer.held(), writer.delivered), (1, 0))
        self.assertEqual(len(self.logs.lines()), 1, self.logs.lines())

    @defer.inlineCallbacks
    def test_wrong_password_is_refused(self):
        """WRONGPASS: never up; the problem says the password was refused."""
        admin = self.server.client(password="right")
        before = connections_received(admin)
        writer = self.make_writer(password="wrong")
        writer.startService()
        # Three tries, each a connection the server counts (ours is one).
        tried = yield self.wait_for(lambda: connections_received(admin) >= before + 4)
        self.assertTrue(tried, "the writer did not try again")
        self.assertFalse(writer.redis_up())
        self.assertIn("refused the password", writer.problem)
        self.assertEqual(len(self.logs.lines("warn")), 1, self.logs.lines())

    @defer.inlineCallbacks
    def test_right_password_is_up(self):
        """The right password: up, no problem, events delivered."""
        writer = self.make_writer(password="right")
        self.assertIsNotNone(writer.problem)
        writer.startService()
        yield writer.when_connected()
        self.assertTrue(writer.redis_up())
        self.assertIsNone(writer.problem)
        writer.push(writer.queue("q:auth", None), b"in")
        ok = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(ok)
        self.assertEqual(self.server.client(password="right").lrange("q:auth", 0, -1), [b"in"])


class RefusalLogTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_refused_queue_is_said_once_then_its_end_with_a_count(self):
        """
        WRONGTYPE retried every second: one warning, not one per retry; once
        the key is fixed, one line with how many times it was refused.
        """
        logs = LogCapture(self)
        self.server.start()
        self.server.client().set("q:str", "a string")
        writer = self.make_writer()
        writer.startService()
        writer.push(writer.queue("q:str", None), b"e")
        # Refused three times (each a LPUSH the server ran and failed).
        refused = yield self.wait_for(lambda: command_calls(self.server.client(), "lpush") >= 3)
        self.assertTrue(refused, "the writer did not try again")
        warnings = logs.lines("warn")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("Redis refused events for queue q:str: WRONGTYPE", warnings[0])
        self.server.client().delete("q:str")
        ok = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(ok)
        infos = [line for line in logs.lines("info") if "q:str" in line]
        self.assertEqual(len(infos), 1, infos)
        refused = int(re.search(r"refused them (\d+) times", infos[0]).group(1))
        self.assertGreaterEqual(refused, 3)
        self.assertIn("WRONGTYPE", infos[0])


class RefusedCounterTests(WriterTestMixin, unittest.TestCase):
    """
    Redis applies the rest of a transaction whose LPUSH (or XADD) it refuses
    with WRONGTYPE: the INCRBY of every refused try counts events that were
    not pushed.  Once the queue takes them, the counter is exact.
    """

    @defer.inlineCallbacks
    def check_counted_once(self, shape, item):
        self.server.start()
        client = self.server.client()
        client.set("q:str", "a string")
        writer = self.make_writer()
        writer.startService()
        q = writer.queue("q:str", "c:str", shape)
        for _ in range(5):
            writer.push(q, item)
        # Refused twice (each a command the server ran and failed).
        command = "lpush" if shape is LIST else "xadd"
        refused = yield self.wait_for(lambda: command_calls(client, command) >= 2)
        self.assertTrue(refused, "the writer did not try again")
        self.assertGreaterEqual(int(client.get("c:str")), 5)  # Redis applied the INCRBY
        client.delete("q:str")
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 5)))
        self.assertEqual(int(client.get("c:str")), 5)
        more = writer.queue("q:str", "c:str", shape)
        writer.push(more, item)
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 6)))
        self.assertEqual(int(client.get("c:str")), 6)

    def test_a_list(self):
        return self.check_counted_once(LIST, b"e")

    def test_a_stream(self):
        shape = StreamQueue()
        return self.check_counted_once(shape, shape.encoder("/d")("f", CREATED, 1.0))

    @defer.inlineCallbacks
    def test_a_refused_counter_neither_repeats_the_events_nor_loses_its_count(self):
        """
        The counter's key has the wrong type: the LPUSH is applied, the
        INCRBY refused.  The batch is delivered once (a resend would push it
        again every second), said once; the counter gets what it missed
        with the queue's next batch once its key is fixed.
        """
        logs = LogCapture(self)
        self.server.start()
        client = self.server.client()
        client.rpush("c:list", "not a number")
        writer = self.make_writer()
        writer.startService()
        q = writer.queue("q", "c:list")
        for i in range(5):
            writer.push(q, b"e%d" % i)
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 5)))
        for i in range(3):
            writer.push(q, b"f%d" % i)
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 8)))
        # The time is what is tested: a resend would come after the pause.
        yield sleep(REFUSED_PAUSE * 1.5)
        self.assertEqual(client.llen("q"), 8)  # nothing pushed twice
        warnings = [line for line in logs.lines("warn") if "c:list" in line]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("WRONGTYPE", warnings[0])
        client.delete("c:list")
        writer.push(q, b"g")
        self.assertTrue((yield self.wait_for(lambda: writer.delivered == 9)))
        self.assertEqual(int(client.get("c:list")), 9)
        infos = [line for line in logs.lines("info") if "c:list" in line]
        self.assertEqual(len(infos), 1, infos)


class DeliveryMetadataTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_delivered_by_section_and_kind_with_delivery_times(self):
        """
        Pushes of two sections and kinds, one of them read 5 s ago: counted
        per (section, event), each event's delay in the histogram.
        """
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        yield writer.when_connected()
        qa, qb = writer.queue("q:a", None), writer.queue("q:b", None)
        now = reactor.seconds()
        writer.push_many(qa, [b"a1", b"a2", b"a3"], section="a", event="created",
                         read_time=now - 5)
        for i in range(4):
            writer.push(qb, b"b%d" % i, section="b", event="exists", read_time=now)
        writer.push_many(qa, [b"a4"], section="a", event="exists", read_time=now)
        ok = yield self.wait_for(lambda: writer.delivered == 8)
        self.assertTrue(ok)
        self.assertEqual(writer.delivered_by,
                         {("a", "created"): 3, ("b", "exists"): 4, ("a", "exists"): 1})
        histogram = writer.delivery_seconds
        self.assertEqual(histogram.count, 8)
        slow = stats.DELIVERY_BUCKETS.index(10.0)  # the bucket (5, 10]
        self.assertEqual(histogram.counts[slow], 3)
        self.assertEqual(sum(histogram.counts[:stats.DELIVERY_BUCKETS.index(5.0)]), 5)
        self.assertGreaterEqual(histogram.total, 15.0)
        self.assertEqual((len(qa.segments), len(qb.segments)), (0, 0))

    @defer.inlineCallbacks
    def test_segments_split_across_batches_and_drops_leave_none(self):
        """
        A push larger than one batch is accounted over two acknowledgements;
        events past max_held are counted as dropped, not as delivered.
        """
        total = BATCH + BATCH // 2
        writer = self.make_writer(max_held=total)
        writer.startService()
        q = writer.queue("q:big", None)
        writer.push_many(q, [b"x"] * (BATCH - 10), section="s", event="created",
                         read_time=reactor.seconds())
        writer.push_many(q, [b"y"] * BATCH, section="t", event="exists",
                         read_time=reactor.seconds())
        self.assertEqual(writer.dropped, BATCH - 10 + BATCH - total)
        self.server.start()
        ok = yield self.wait_for(lambda: writer.held() == 0)
        self.assertTrue(ok)
        self.assertEqual(writer.delivered_by,
                         {("s", "created"): BATCH - 10, ("t", "exists"): total - BATCH + 10})
        self.assertEqual(writer.delivery_seconds.count, total)
        self.assertEqual(len(q.segments), 0)


class StopTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_stop_delivers_what_is_held(self):
        """stopService fires after what was held is in Redis."""
        self.server.start()
        writer = self.make_writer()
        writer.startService()
        yield writer.when_connected()
        q = writer.queue("q:stop", None)
        for i in range(300):
            writer.push(q, b"%d" % i)
        yield writer.stopService()
        self.assertEqual(len(self.contents("q:stop")), 300)

    @defer.inlineCallbacks
    def test_stop_with_redis_down_is_bounded_by_timeout(self):
        """With Redis unreachable, stopping does not hang: it gives up after timeout."""
        writer = self.make_writer()
        writer.startService()
        writer.push(writer.queue("q:x", None), b"lost")
        start = reactor.seconds()
        yield writer.stopService()
        self.assertLess(reactor.seconds() - start, self.timeout_s + 1.0)
        self.assertEqual(writer.held(), 1)


class BatchShapeTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_more_queues_than_one_round_takes_all_arrive(self):
        """600 queues (more than QUEUES_PER_ROUND) with one event each all arrive."""
        from dirobserver.redis.rounds import QUEUES_PER_ROUND

        self.server.start()
        writer = self.make_writer()
        writer.startService()
        yield writer.when_connected()
        n = QUEUES_PER_ROUND * 2 + 88
        for i in range(n):
            writer.push(writer.queue(f"q:{i}", None), b"one")
        ok = yield self.wait_for(lambda: writer.delivered == n)
        self.assertTrue(ok)
        self.assertEqual(self.contents(f"q:{n - 1}"), [b"one"])

    @defer.inlineCallbacks
    def test_push_many_keeps_order_and_the_bound(self):
        """push_many holds up to max_held in order, counts the rest as dropped."""

        class Source:
            relists = 0

            def relist(self):
                Source.relists += 1

        writer = self.make_writer(max_held=10)
        writer.startService()
        q = writer.queue("q:many", None)
        writer.push_many(q, [])
        self.assertEqual(writer.held(), 0)
        writer.push_many(q, [b"%d" % i for i in range(6)], Source())
        writer.push_many(q, [b"%d" % i for i in range(6, 15)], Source())
        self.assertEqual((writer.held(), writer.dropped), (10, 5))
        self.server.start()
        ok = yield self.wait_for(lambda: writer.delivered == 10)
        self.assertTrue(ok)
        self.assertEqual(self.contents("q:many"), [b"%d" % i for i in range(10)])


class ConnectionSettingsTests(WriterTestMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_unix_socket(self):
        """redis_unix_socket: events go through the socket."""
        import tempfile

        sock_dir = tempfile.mkdtemp(prefix="dro-")  # short: sun_path is ~107 bytes
        self.addCleanup(__import__("shutil").rmtree, sock_dir, True)
        sock = f"{sock_dir}/r.sock"
        self.server.start(unix_socket=sock)
        settings = RedisSettings(host=None, port=None, unix_socket=sock, password=None,
                                 db=None, timeout=self.timeout_s)
        writer = RedisWriter(settings, 1000, reactor)
        self.addCleanup(self._stop, writer)
        writer.startService()
        writer.push(writer.queue("q:unix", None), b"via-socket")
        ok = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(ok)
        self.assertEqual(self.contents("q:unix"), [b"via-socket"])

    @defer.inlineCallbacks
    def test_redis_db_is_selected(self):
        """redis_db: the events land in that database, not in 0."""
        self.server.start()
        settings = RedisSettings(host="127.0.0.1", port=self.server.port, unix_socket=None,
                                 password=None, db=3, timeout=self.timeout_s)
        writer = RedisWriter(settings, 1000, reactor)
        self.addCleanup(self._stop, writer)
        writer.startService()
        writer.push(writer.queue("q:db", "c:db"), b"in-db-3")
        ok = yield self.wait_for(lambda: writer.delivered == 1)
        self.assertTrue(ok)
        self.assertEqual(self.server.client(db=3).lrange("q:db", 0, -1), [b"in-db-3"])
        self.assertEqual(self.server.client(db=0).exists("q:db"), 0)
        self.assertEqual(int(self.server.client(db=3).get("c:db")), 1)


class HeldQueueTests(unittest.TestCase):
    """The held state of one queue: batches and the runs kept for the metrics."""

    def test_alike_pushes_share_one_run_and_a_batch_consumes_runs_in_order(self):
        """Runs merge while alike; an acknowledgement splits a run at the batch end."""
        q = HeldQueue("q", None, LIST)
        q.pending.extend([b"x"] * (BATCH + 5))
        q.record(BATCH - 2, "a", "created", 100.0)
        q.record(1, "a", "created", 100.0)
        q.record(6, "b", "exists", 103.0)
        self.assertEqual(len(q.segments), 2)
        by: dict = {}
        seconds = stats.Histogram(stats.DELIVERY_BUCKETS)
        self.assertEqual(len(q.next_batch()), BATCH)
        self.assertEqual(q.acknowledged(by, seconds, now=104.0), BATCH)
        self.assertEqual(by, {("a", "created"): BATCH - 1, ("b", "exists"): 1})
        self.assertEqual(list(q.segments), [[5, "b", "exists", 103.0]])
        self.assertEqual(seconds.count, BATCH)
        self.assertAlmostEqual(seconds.total, (BATCH - 1) * 4.0 + 1 * 1.0)
        q.next_batch()
        self.assertEqual(q.acknowledged(by, seconds, now=110.0), 5)
        self.assertEqual(by[("b", "exists")], 6)
        self.assertEqual(len(q.segments), 0)
        self.assertEqual(q.held(), 0)

    def test_events_without_a_read_time_are_counted_but_not_timed(self):
        """No read_time: in delivered_by, not in the histogram."""
        q = HeldQueue("q", None, LIST)
        q.pending.append(b"x")
        q.record(1, "", "", None)
        by: dict = {}
        seconds = stats.Histogram(stats.DELIVERY_BUCKETS)
        q.next_batch()
        q.acknowledged(by, seconds, now=1.0)
        self.assertEqual((by, seconds.count), ({("", ""): 1}, 0))
