"""
The Redis connection: its retry policy, its handshake, and what it says.

The backoff is driven by L{task.Clock} with endpoints of the test's own
(refusing, or accepting and dropping, or silent), as Twisted's tests drive
C{ClientService}.  What a Redis answers (no password, a wrong one, the right
one) is asked of a real valkey-server; a port that accepts connections and
drops them is a real TCP listener of the test.
"""

from __future__ import annotations

import dataclasses
from itertools import pairwise

import pytest
from twisted.internet import defer, error, protocol, reactor, task
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial import unittest
from zope.interface import implementer

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.connection import RedisConnection, handshake_steps
from dirobserver.util.backoff import Recurring, SharedCauses, exponential_backoff
from tests.kit import RedisServer
from tests.kit.cases import Connecting
from tests.kit.log_capture import LogCapture
from tests.kit.waiting import sleep

TIMEOUT = 1.0


def settings_for(port: int = 6379, password: str | None = None, db: int | None = None,
                 timeout: float = TIMEOUT, username: str | None = None) -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=port, unix_socket=None, password=password,
                         db=db, timeout=timeout, username=username)


@implementer(IStreamClientEndpoint)
class ScriptedEndpoint:
    """
    An endpoint whose every connection behaves as told: C{"refuse"}, C{"drop"}
    (connects, then the peer closes before answering), C{"silent"} (connects
    and never answers), or C{"pong"} (answers the handshake's lone PING).
    """

    def __init__(self, clock: task.Clock, behaviour: str) -> None:
        self.clock = clock
        self.behaviour = behaviour
        self.attempts: list[float] = []
        self.transports: list[StringTransportWithDisconnection] = []
        # The endpoint's own scripted calls (the peer's drop, its PONG): not
        # the connection's, so a test asking what the connection left pending
        # leaves them out (one made in the last step of a run is still due).
        self.scripted: list = []

    def connect(self, factory: protocol.Factory) -> defer.Deferred:
        self.attempts.append(self.clock.seconds())
        if self.behaviour == "refuse":
            return defer.fail(error.ConnectionRefusedError())
        proto = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.transports.append(transport)
        if self.behaviour == "drop":
            self.scripted.append(self.clock.callLater(0.001, transport.loseConnection))
        elif self.behaviour == "pong":
            self.scripted.append(self.clock.callLater(0.001, proto.dataReceived, b"+PONG\r\n"))
        return defer.succeed(proto)


class RetryPolicyTests(unittest.TestCase):
    def test_delays_grow_then_stay_at_the_cap_within_the_jitter(self):
        """Doubling from the initial delay, capped, shortened by at most the jitter."""
        policy = exponential_backoff(initial=0.1, maximum=2.0, factor=2.0, jitter=0.2)
        for _ in range(50):
            delays = [policy(n) for n in range(1, 12)]
            for n, delay in enumerate(delays, 1):
                bound = min(0.1 * 2 ** (n - 1), 2.0)
                self.assertTrue(0.8 * bound <= delay <= bound, (n, delay, bound))
        self.assertLessEqual(policy(10_000), 2.0)

    def test_the_random_source_is_a_seam(self):
        """No jitter with a source that returns 0, the full jitter with one near 1."""
        self.assertEqual(exponential_backoff(random=lambda: 0.0)(3), 0.4)
        self.assertAlmostEqual(exponential_backoff(random=lambda: 0.5, jitter=0.2)(1), 0.09)

    def test_recurring_says_a_cause_once_and_counts_repeats(self):
        """A new cause is news; the same one again is counted; ended() resets."""
        r = Recurring()
        self.assertTrue(r.happened("refused", 10.0))
        self.assertFalse(r.happened("refused", 11.0))
        self.assertFalse(r.happened("refused", 14.0))
        self.assertEqual(r.summary(20.0), "3 times over 10 s")
        self.assertTrue(r.happened("timeout", 21.0))
        self.assertEqual(r.summary(21.0), "once over 0 s")
        self.assertTrue(r.ended())
        self.assertFalse(r.ended())

    def test_shared_causes_are_news_once_and_end_with_their_last_member(self):
        """Two queues refused for one cause: one "new", one end, counting both."""
        now = [0.0]
        causes = SharedCauses(lambda: now[0])
        self.assertEqual(causes.happened("q1", "OOM"), (True, None))
        self.assertEqual(causes.happened("q2", "OOM"), (False, None))
        now[0] = 5.0
        self.assertEqual(causes.happened("q1", "OOM"), (False, None))
        self.assertIsNone(causes.cleared("q1"))
        now[0] = 9.0
        self.assertEqual(causes.cleared("q2"), "3 times over 9 s (OOM)")
        self.assertIsNone(causes.cleared("q2"))
        self.assertEqual(causes.happened("q1", "WRONGTYPE"), (True, None))
        self.assertEqual(causes.happened("q1", "OOM"), (True, "once over 0 s (WRONGTYPE)"))


class ClockBackoffTests(unittest.TestCase):
    """The connection's retries, on a Clock."""

    def make(self, behaviour: str, retry_policy=None) -> tuple:
        self.clock = task.Clock()
        endpoint = ScriptedEndpoint(self.clock, behaviour)
        ups: list = []
        connection = RedisConnection(
            settings_for(), ups.append, lambda: None, lambda: 7,
            clock=self.clock, endpoint_factory=lambda: endpoint,
            retry_policy=retry_policy,
        )
        self.logs = LogCapture(self)
        return connection, endpoint, ups

    def left_pending(self, endpoint: ScriptedEndpoint) -> list:
        """The delayed calls the connection left, not the endpoint's script."""
        return [c for c in self.clock.getDelayedCalls() if c not in endpoint.scripted]

    def run_for(self, seconds: float, step: float = 0.01) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def test_refused_connections_back_off_to_the_cap_and_log_once(self):
        """Attempts spread out as the delays grow; one warning for one cause."""
        connection, endpoint, ups = self.make("refuse")
        connection.start()
        self.run_for(10)
        gaps = [b - a for a, b in pairwise(endpoint.attempts)]
        self.assertLess(gaps[0], gaps[3])
        self.assertTrue(all(g <= 2.0 + 0.011 for g in gaps), gaps)
        self.assertGreaterEqual(gaps[-1], 1.6 - 0.011)
        self.assertLess(len(endpoint.attempts), 14)
        self.assertEqual(ups, [])
        self.assertIn("is unreachable (connection refused)", connection.problem)
        warnings = self.logs.lines("warn")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("127.0.0.1:6379 is unreachable (connection refused); 7 events held",
                      warnings[0])
        self.successResultOf(connection.stop())
        self.assertEqual(self.left_pending(endpoint), [])

    def test_a_port_that_accepts_then_drops_gets_the_same_backoff(self):
        """
        A connection made and dropped before Redis answered is a failure: the
        failure count keeps growing (no reset at connect), one line is logged.
        """
        seen: list[int] = []
        policy = exponential_backoff()

        def recording(n: int) -> float:
            seen.append(n)
            return policy(n)

        connection, endpoint, ups = self.make("drop", recording)
        connection.start()
        self.run_for(5)
        self.assertEqual(seen, list(range(1, len(seen) + 1)))
        self.assertLess(len(endpoint.attempts), 10)
        self.assertEqual(ups, [])
        self.assertTrue(all(t.value() == b"*1\r\n$4\r\nPING\r\n" for t in endpoint.transports))
        self.assertIn("closed the connection before answering", connection.problem)
        self.assertEqual(len(self.logs.lines("warn")), 1, self.logs.lines())
        self.successResultOf(connection.stop())
        self.assertEqual(self.left_pending(endpoint), [])

    def test_the_failure_count_resets_only_once_the_handshake_is_answered(self):
        """Refused five times: n grows to 5; answered, then lost: n starts at 1 again."""
        seen: list[int] = []
        policy = exponential_backoff(random=lambda: 0.0)

        def recording(n: int) -> float:
            seen.append(n)
            return policy(n)

        connection, endpoint, ups = self.make("refuse", recording)
        connection.start()
        self.run_for(0.1 + 0.2 + 0.4 + 0.8 - 0.005)
        self.assertEqual(seen, [1, 2, 3, 4])
        endpoint.behaviour = "pong"
        self.run_for(1.6)
        self.assertEqual(len(ups), 1)
        self.assertIsNone(connection.problem)
        self.assertEqual(seen, [1, 2, 3, 4])
        endpoint.behaviour = "refuse"
        endpoint.transports[-1].loseConnection()
        self.assertIn("Lost the connection", connection.problem)
        self.run_for(0.25)
        self.assertEqual(seen, [1, 2, 3, 4, 1, 2])
        self.assertIn("is unreachable (connection refused)", connection.problem)
        self.successResultOf(connection.stop())
        self.assertEqual(self.left_pending(endpoint), [])

    def test_a_silent_server_hits_the_handshake_deadline(self):
        """Connected, PING unanswered: after the deadline, aborted and retried."""
        connection, endpoint, ups = self.make("silent")
        connection.start()
        self.clock.advance(TIMEOUT - 0.01)
        self.assertEqual(len(endpoint.attempts), 1)
        self.assertFalse(endpoint.transports[0].disconnected)
        self.clock.advance(0.02)
        self.assertTrue(endpoint.transports[0].disconnected)
        self.assertIn(f"did not answer PING within {TIMEOUT} s", connection.problem)
        self.run_for(0.2)
        self.assertEqual(len(endpoint.attempts), 2)
        self.successResultOf(connection.stop())
        self.assertTrue(endpoint.transports[1].disconnected)
        self.assertEqual(self.left_pending(endpoint), [])

    def test_stop_cancels_the_pending_retry(self):
        """Stopping between attempts leaves no delayed call and no more attempts."""
        connection, endpoint, _ = self.make("refuse")
        connection.start()
        self.clock.advance(0.05)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(connection.stop())
        self.assertEqual(self.left_pending(endpoint), [])
        self.run_for(5, step=0.5)
        self.assertEqual(len(endpoint.attempts), 1)

    def test_reconnect_now_leaves_the_node_at_once_without_the_backoff(self):
        """
        A master that moved: the connection is dropped and the next attempt
        starts on the next reactor turn, the retry policy not consulted; a
        move announced during an attempt makes one more attempt after it.
        """
        seen: list[int] = []
        connection, endpoint, ups = self.make("pong", lambda n: seen.append(n) or 1.0)
        downs: list[None] = []
        connection._on_down = lambda: downs.append(None)
        connection.start()
        self.clock.advance(0.002)
        self.assertEqual(len(ups), 1)
        connection.reconnect_now("is not the master any more (test)")
        self.assertIsNone(connection.proto)
        self.assertEqual(downs, [None])
        self.assertTrue(endpoint.transports[0].disconnected)
        self.assertIn("is not the master any more (test)", connection.problem)
        self.clock.advance(0)
        self.assertEqual(len(endpoint.attempts), 2)
        connection.reconnect_now("moved again while connecting")  # an attempt is under way
        self.clock.advance(0.002)
        self.assertFalse(endpoint.transports[1].connected)  # reached, and left at once
        self.clock.advance(0.002)
        self.assertEqual(len(endpoint.attempts), 3)
        self.assertEqual(len(ups), 2)
        self.assertEqual(seen, [])
        self.assertEqual(connection.not_master("READONLY x"), False)  # a fixed address: the writer's
        warnings = self.logs.lines("warn")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("connecting to the master the Sentinels name now", warnings[0])
        self.successResultOf(connection.stop())
        self.assertEqual(self.left_pending(endpoint), [])

    def test_handshake_steps_follow_the_settings(self):
        """AUTH only with a password, SELECT only with a db, PING always last."""
        self.assertEqual([s.shown for s in handshake_steps(settings_for())], ["PING"])
        steps = handshake_steps(settings_for(password="pw", db=3))
        self.assertEqual([s.shown for s in steps], ["AUTH", "SELECT 3", "PING"])
        self.assertNotIn("pw", " ".join(s.shown for s in steps))
        steps = handshake_steps(settings_for(password="pw", username="observer"))
        self.assertEqual([(s.command, s.shown) for s in steps],
                         [(("AUTH", "observer", "pw"), "AUTH observer"), (("PING",), "PING")])
        sentinel = dataclasses.replace(settings_for(), sentinels=(("127.0.0.1", 26379),),
                                       sentinel_master="m")
        role = handshake_steps(sentinel)[-1]
        self.assertEqual(role.shown, "ROLE")
        self.assertTrue(role.accepts(["master", 0, []]))
        self.assertFalse(role.accepts(["slave", "127.0.0.1", 6379, "connected", 0]))
        self.assertFalse(role.accepts(["sentinel", ["m"]]))


@pytest.mark.process
class RealServerTests(Connecting, unittest.TestCase):
    """What a real valkey-server answers, and a real port that drops connections."""

    def setUp(self) -> None:
        self.logs = LogCapture(self)
        self.server = RedisServer()
        self.addCleanup(self.server.cleanup)

    def with_password(self) -> None:
        self.server.start()
        self.server.client().config_set("requirepass", "right")

    @defer.inlineCallbacks
    def test_right_password_and_db_make_the_connection(self):
        """AUTH and SELECT accepted, PING answered: up, no problem, nothing logged."""
        self.with_password()
        connection = self.connect(settings_for(self.server.port, password="right", db=2))
        yield self.wait_for(lambda: self.ups)
        self.assertEqual(len(self.ups), 1)
        self.assertIsNone(connection.problem)
        yield self.ups[0].execute_command("SET", "k", "v")
        self.assertEqual(self.server.client(password="right", db=2).get("k"), b"v")
        self.assertEqual(self.logs.lines(), [])

    @defer.inlineCallbacks
    def test_an_acl_user_logs_in_and_a_refused_one_is_named(self):
        """
        AUTH user password (Redis 6 ACL): the right pair connects as that
        user; a wrong password is one line naming the user, never up, retried.
        """
        self.server.start()
        admin = self.server.client()
        admin.execute_command("ACL", "SETUSER", "observer", "on", ">right", "~*", "+@all")
        refused = self.connect(settings_for(self.server.port, password="wrong", username="observer"))
        retried = yield self.wait_for(lambda: refused.attempts > 2)
        self.assertTrue(retried, f"{refused.attempts} attempts")
        self.assertEqual(self.ups, [])
        self.assertEqual(
            refused.problem,
            f"Redis at 127.0.0.1:{self.server.port} refused user 'observer' with the password in "
            "redis_password (WRONGPASS invalid username-password pair or user is disabled.)")
        self.assertGreater(refused.attempts, 2)
        self.assertEqual(len(self.logs.lines("warn")), 1, self.logs.lines())
        yield refused.stop()
        self.connect(settings_for(self.server.port, password="right", username="observer"))
        yield self.wait_for(lambda: self.ups)
        self.assertEqual((yield self.ups[0].execute_command("ACL", "WHOAMI")), "observer")

    @defer.inlineCallbacks
    def test_out_of_range_db_is_a_precise_refusal(self):
        """SELECT refused: the problem names the command and Redis's reason."""
        self.server.start()
        connection = self.connect(settings_for(self.server.port, db=999))
        refused = yield self.wait_for(lambda: "refused SELECT" in (connection.problem or ""))
        self.assertTrue(refused, connection.problem)
        self.assertEqual(self.ups, [])
        self.assertIn("refused SELECT 999", connection.problem)

    @defer.inlineCallbacks
    def test_backoff_resets_only_after_redis_answered(self):
        """Failures count up while Redis is down; after a connection, back to 1."""
        seen: list[int] = []
        policy = exponential_backoff()

        def recording(n: int) -> float:
            seen.append(n)
            return policy(n)

        self.connect(settings_for(self.server.port), recording)
        self.assertTrue((yield self.wait_for(lambda: len(seen) >= 3)), seen)
        self.assertEqual(seen, list(range(1, len(seen) + 1)))
        self.server.start()
        self.assertTrue((yield self.wait_for(lambda: self.ups)), "never connected")
        self.assertEqual(len(self.ups), 1)
        before = len(seen)
        self.server.kill()
        self.assertTrue((yield self.wait_for(lambda: len(seen) > before + 1)), seen)
        self.assertEqual(seen[before:before + 2], [1, 2])
        lines = self.logs.lines()
        self.assertTrue(any("answers again" in line for line in lines), lines)
        self.assertTrue(any("Lost the connection" in line for line in lines), lines)

    @defer.inlineCallbacks
    def test_a_listener_that_drops_connections_gets_the_capped_backoff(self):
        """
        A TCP port that accepts and closes at once (not a Redis): few attempts
        in 3 s, one log line, never up.
        """
        accepted = []

        class Drop(protocol.Protocol):
            def connectionMade(self):
                accepted.append(reactor.seconds())
                self.transport.loseConnection()

        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Drop), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        connection = self.connect(settings_for(port.getHost().port))
        yield sleep(3)  # the number of attempts in this time is what is tested
        self.assertEqual(self.ups, [])
        self.assertGreaterEqual(len(accepted), 3)
        self.assertLessEqual(len(accepted), 8)
        self.assertEqual(len(self.logs.lines()), 1, self.logs.lines())
        self.assertIn("closed the connection before answering", connection.problem)
