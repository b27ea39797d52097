"""
One connection attempt to a Redis server (or to a Sentinel): connect, send
the handshake's commands one by one, each reply checked, everything under
one deadline; and, when it fails, why, in words that follow
C{"Redis at host:port "} in a log line.

txredisapi is used at its protocol level only (L{RedisProtocol}), built
without a password or a database so that it sends nothing by itself: the
handshake is the caller's list of L{Step}s.  L{dirobserver.redis.connection} keeps
the connection to the master open with it; L{dirobserver.redis.sentinel} asks the
Sentinels with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import txredisapi
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint


class RedisProtocol(txredisapi.RedisProtocol):
    """
    txredisapi's protocol with a faster command builder for bulk pushes.

    @ivar lost_reason: why the connection was lost (a failed TLS handshake
        shows here, while the commands waiting only see "Lost connection").
    @ivar handshake_replies: the replies to the handshake's steps, in order.
    """

    lost_reason: Any = None
    handshake_replies: list[Any] = []

    def connectionLost(self, why: Any) -> None:
        self.lost_reason = why
        super().connectionLost(why)

    def _build_command(self, *args: Any, **kwargs: Any) -> bytes:
        # txredisapi makes several calls and copies per argument; a variadic
        # LPUSH of thousands of events spends most of its time there.
        encode = self._encode_value
        args = [arg if type(arg) is bytes else encode(arg) for arg in args]
        return b"*%d\r\n" % len(args) + b"".join(
            [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
        )


class _ProtocolFactory(protocol.Factory):
    """Builds a protocol that sends nothing of its own (no AUTH, no SELECT)."""

    isLazy = False
    noisy = False

    def __init__(self, protocol_class: type[RedisProtocol] = RedisProtocol) -> None:
        self._class = protocol_class

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        proto = self._class(charset="utf-8", convertNumbers=False)
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        """Nothing to stop: L{RedisConnection} schedules every attempt itself."""

    def connectionError(self, why: str) -> None:
        """Not called: the protocol is given no AUTH or SELECT to fail."""

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


def describe_failure(failure: Any) -> str:
    """A short text for a failure, for one log line."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "no answer in time"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    return failure.getErrorMessage() or failure.type.__name__


class AttemptFailed(Exception):
    """A connection attempt failed; the text follows C{"Redis at host:port "}."""


class _Dial:
    """The state of one L{dial}: the protocol once connected, the step it is at."""

    def __init__(
        self, steps: list[Step], timeout: float, password_key: str,
        tls_failure: Callable[[Any], str | None] | None,
    ) -> None:
        self.steps, self.timeout = steps, timeout
        self.password_key, self.tls_failure = password_key, tls_failure
        self.proto: RedisProtocol | None = None
        self.step: Step | None = None

    async def handshake(self, proto: RedisProtocol) -> RedisProtocol:
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

    def cause(self, failure: Any) -> str:
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

    def failed(self, failure: Any) -> Any:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.abortConnection()
        if failure.check(defer.CancelledError, error.ConnectingCancelledError):
            # Cancelled by its caller (the deadline's is a TimeoutError):
            # nothing to explain, and nothing more to try.
            return failure
        raise AttemptFailed(self.cause(failure))


def dial(
    endpoint: IStreamClientEndpoint,
    steps: list[Step],
    timeout: float,
    clock: IReactorTime,
    *,
    password_key: str = "redis_password",
    tls_failure: Callable[[Any], str | None] | None = None,
    protocol_class: type[RedisProtocol] = RedisProtocol,
) -> defer.Deferred:
    """
    Connect to C{endpoint} and send C{steps}, everything under one deadline.

    @param password_key: the key named when a password is wanted or refused.
    @param tls_failure: what a lost connection means about TLS (or None).
    @return: a Deferred firing with the protocol (the replies in its
        C{handshake_replies}), or failing with L{AttemptFailed}; a failed
        attempt's connection is closed.
    """
    attempt = _Dial(steps, timeout, password_key, tls_failure)
    d = defer.maybeDeferred(endpoint.connect, _ProtocolFactory(protocol_class))
    d.addCallback(lambda proto: defer.Deferred.fromCoroutine(attempt.handshake(proto)))
    d.addTimeout(timeout, clock)
    return d.addErrback(attempt.failed)


def cancel_pending(call: Any, attempt: defer.Deferred | None) -> None:
    """Cancel a scheduled retry and an attempt under way (either may be None)."""
    if call is not None and call.active():
        call.cancel()
    if attempt is not None:
        attempt.cancel()


def close_protocol(proto: RedisProtocol | None) -> defer.Deferred:
    """Close C{proto}'s connection (if any); fires once it is closed."""
    if proto is None or not proto.transport:
        return defer.succeed(None)
    gone = proto.whenDisconnected()
    proto.transport.loseConnection()
    return gone.addCallback(lambda _: None)
