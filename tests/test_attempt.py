"""One connection attempt (attempt.py): what its caller sees when it cancels it."""

from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.trial import unittest

from dirobserver.redis.attempt import AttemptFailed, Step, connect_and_handshake


class ResolvingEndpoint:
    """
    An endpoint still resolving its host name, as C{HostnameEndpoint} is for
    a moment: its Deferred has no canceller of its own, so a cancel comes
    out as the lookup's failure (C{DNSLookupError}), not as a cancel.
    """

    def connect(self, factory):
        return defer.Deferred().addErrback(
            lambda _: defer.fail(error.DNSLookupError("Couldn't find the hostname")))


class RefusingEndpoint:
    def connect(self, factory):
        return defer.fail(error.ConnectionRefusedError())


class CancelTests(unittest.SynchronousTestCase):
    def test_a_cancel_during_the_lookup_is_a_cancel_not_an_unreachable_server(self):
        """Else a caller trying Sentinels in turn would go on to the next after it was stopped."""
        clock = Clock()
        d = connect_and_handshake(ResolvingEndpoint(), [Step(("PING",), "PING")], 1.0, clock)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_the_deadline_is_still_a_failed_attempt(self):
        clock = Clock()
        d = connect_and_handshake(ResolvingEndpoint(), [Step(("PING",), "PING")], 1.0, clock)
        clock.advance(1.0)
        failure = self.failureResultOf(d, AttemptFailed)
        self.assertIn("is unreachable", str(failure.value))

    def test_a_refused_connection_is_said(self):
        d = connect_and_handshake(RefusingEndpoint(), [Step(("PING",), "PING")], 1.0, Clock())
        failure = self.failureResultOf(d, AttemptFailed)
        self.assertIn("connection refused", str(failure.value))
