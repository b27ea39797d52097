"""
One connection attempt to a Redis server (or to a Sentinel): connect, send
the handshake's commands one by one, each reply checked, everything under
one deadline; and, when it fails, why, in words that follow
C{"Redis at host:port "} in a log line.

The connection speaks L{dirobserver.redis.protocol.RespProtocol}, which
sends nothing by itself: the handshake is the caller's list of L{Step}s.
L{dirobserver.redis.connection} keeps the connection to the master open with
it; L{dirobserver.redis.sentinel} asks the Sentinels with it, and keeps the
C{+switch-master} subscription open with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import txredisapi
from twisted.internet import defer, error
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from dirobserver.redis.protocol import RespFactory, RespProtocol
from dirobserver.util.failures import describe_failure


def is_reply(expected: str) -> Callable[[Any], bool]:
    """A L{Step.accepts} that wants exactly C{expected}."""
    return lambda reply: reply == expected

@dataclass(frozen=True)
class Step:
    """
    One command of the handshake.

    @ivar command: what is sent.
    @ivar shown: the command as log lines show it (never a password).
    @ivar accepts: whether a (non-error) reply is the one wanted.
    @ivar wrong: what a reply C{accepts} refuses means (a default otherwise).
    @ivar user: the ACL user an C{AUTH} step logs in as.
    """

    command: tuple[Any, ...]
    shown: str
    accepts: Callable[[Any], bool] = is_reply("OK")
    wrong: Callable[[Any], str] | None = None
    user: str | None = None

class HandshakeRefused(Exception):
    """Redis answered a handshake command, but not with what was wanted."""


def refusal(step: Step, message: str, password_key: str = "redis_password") -> str:
    """
    What an error reply to a handshake step means, worded to follow
    C{"Redis at host:port "} in a log line.

    @param password_key: the key that holds the password sent (or not).
    """
    code = message.split(" ", 1)[0]
    if code == "NOAUTH":
        return f"needs a password (NOAUTH) and {password_key} is not set"
    if code == "WRONGPASS" or "invalid password" in message:
        if step.user is not None:
            return f"refused user {step.user!r} with the password in {password_key} ({message})"
        return f"refused the password in {password_key} ({message})"
    if step.shown.startswith("AUTH") and "without any password configured" in message:
        return f"has no password set, yet {password_key} is set (AUTH refused)"
    return f"refused {step.shown} ({message})"


class AttemptFailed(Exception):
    """A connection attempt failed; the text follows C{"Redis at host:port "}."""


class _Attempt:
    """The state of one L{connect_and_handshake}: the protocol once connected, the step it is at."""

    def __init__(
        self, steps: list[Step], timeout: float, password_key: str,
        tls_failure: Callable[[Any], str | None] | None,
    ) -> None:
        self.steps, self.timeout = steps, timeout
        self.password_key, self.tls_failure = password_key, tls_failure
        self.proto: RespProtocol | None = None
        self.step: Step | None = None
        #: set when the caller cancels (not when the deadline does)
        self.cancelled = False

    async def handshake(self, proto: RespProtocol) -> RespProtocol:
        """Send the steps in turn; fail at the first bad reply."""
        self.proto = proto
        proto.handshake_replies = replies = []
        for step in self.steps:
            self.step = step
            try:
                reply = await proto.execute_command(*step.command)
            except txredisapi.ResponseError as e:
                raise HandshakeRefused(refusal(step, str(e), self.password_key)) from None
            if not step.accepts(reply):
                raise HandshakeRefused(
                    step.wrong(reply) if step.wrong is not None else
                    f"answered {step.shown} with {str(reply)[:60]!r}: is it a Redis server?"
                )
            replies.append(reply)
        return proto

    def cause(self, failure: Failure) -> str:
        """Why the attempt failed, worded to follow C{"Redis at host:port "}."""
        if failure.check(HandshakeRefused):
            return str(failure.value)
        proto = self.proto
        if proto is None:
            return f"is unreachable ({describe_failure(failure)})"
        # Connected, then no proper answer: a failed TLS handshake, or the
        # port is not a (working) Redis.
        if proto.lost_reason is not None and self.tls_failure is not None:
            tls_cause = self.tls_failure(proto.lost_reason)
            if tls_cause is not None:
                return tls_cause
        if failure.check(txredisapi.ConnectionError):
            return "closed the connection before answering"
        if failure.check(defer.TimeoutError):
            shown = self.step.shown if self.step else "the handshake"
            return f"did not answer {shown} within {self.timeout} s"
        return f"is unreachable ({describe_failure(failure)})"

    def failed(self, failure: Failure) -> Any:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.abortConnection()
        if self.cancelled or failure.check(defer.CancelledError, error.ConnectingCancelledError):
            # Cancelled by its caller (the deadline's is a TimeoutError):
            # nothing to explain, and nothing more to try.  A cancel that
            # lands while the host name is being resolved comes back as a
            # DNSLookupError: the flag, not the failure, says what happened
            # (otherwise a caller trying Sentinels in turn takes it for an
            # unreachable one and goes on to the next, after it was stopped).
            if self.cancelled and not failure.check(defer.CancelledError):
                return Failure(defer.CancelledError())
            return failure
        raise AttemptFailed(self.cause(failure))


def connect_and_handshake(
    endpoint: IStreamClientEndpoint,
    steps: list[Step],
    timeout: float,
    clock: IReactorTime,
    *,
    password_key: str = "redis_password",
    tls_failure: Callable[[Any], str | None] | None = None,
) -> defer.Deferred:
    """
    Connect to C{endpoint} and send C{steps}, everything under one deadline.

    @param password_key: the key named when a password is wanted or refused.
    @param tls_failure: what a lost connection means about TLS (or None).
    @return: a Deferred firing with the protocol (the replies in its
        C{handshake_replies}), or failing with L{AttemptFailed}; a failed
        attempt's connection is closed.
    """
    attempt = _Attempt(steps, timeout, password_key, tls_failure)
    d = defer.maybeDeferred(endpoint.connect, RespFactory())
    d.addCallback(lambda proto: defer.Deferred.fromCoroutine(attempt.handshake(_built(proto))))
    d.addTimeout(timeout, clock)
    d.addErrback(attempt.failed)

    def cancel(_: defer.Deferred) -> None:
        attempt.cancelled = True
        d.cancel()

    result: defer.Deferred = defer.Deferred(canceller=cancel)
    d.chainDeferred(result)
    return result


def _built(proto: IProtocol) -> RespProtocol:
    """
    What an endpoint connected, as what it is: the L{RespProtocol} its
    L{RespFactory} built (C{IStreamClientEndpoint.connect} is declared to
    fire with any L{IProtocol}).
    """
    if not isinstance(proto, RespProtocol):
        raise TypeError(f"the endpoint connected {proto!r}, not the RespProtocol its factory built")
    return proto


def cancel_pending(call: IDelayedCall | None, attempt: defer.Deferred | None) -> None:
    """Cancel a scheduled retry and an attempt under way (either may be None)."""
    if call is not None and call.active():
        call.cancel()
    if attempt is not None:
        attempt.cancel()


def close_protocol(proto: RespProtocol | None) -> defer.Deferred:
    """Close C{proto}'s connection (if any); fires once it is closed."""
    if proto is None or not proto.transport:
        return defer.succeed(None)
    gone = proto.whenDisconnected()
    proto.transport.loseConnection()
    return gone.addCallback(lambda _: None)
