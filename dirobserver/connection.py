"""
The connection to Redis: one txredisapi protocol, opened, checked, watched
and reopened with a capped backoff for as long as it is wanted.

txredisapi is used at its protocol level, on one connection that this module
opens itself.  That sidesteps the traps of txredisapi's connection handler: a
command sent while disconnected with C{reconnect=True} never returns; a
failed AUTH or SELECT stops reconnecting for good; a C{MULTI} can hang after a
restart; pools can deadlock.  The protocol is built without a password or a
database, so it sends nothing by itself: the handshake is ours, one list of
commands (L{handshake_steps}: C{AUTH}, C{SELECT}, C{PING}) sent one by one,
each reply checked, the whole sequence (the TCP or Unix connection included)
under one deadline (C{timeout} from the configuration).

A connection counts as up only once Redis has answered the handshake: a
server that wants a password (C{NOAUTH}) or refuses it (C{WRONGPASS}), a port
that accepts connections and drops them, or a program that is not Redis, are
failures like a refused connection.  They are retried with the capped backoff
(the retry policy, reset only by a completed handshake);
L{RedisConnection.problem} says why in one line, and the log says it once per
change of cause.

The seams are parameters, as in Twisted's C{ClientService}: the clock, the
retry policy, and the endpoint factory (a new endpoint per attempt, so TLS or
a Sentinel lookup can plug in there).

L{dirobserver.writer} is its only user: it sends commands on L{proto} while
it is set, and is told when it comes and goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import txredisapi
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger

from .backoff import Recurring, exponential_backoff
from .config import RedisSettings

#: Bytes the connection may write per reactor turn.  Twisted's default
#: (128 KiB) makes a 10,000-event LPUSH take a dozen turns to leave, and the
#: next round (another directory's one new file) waits behind it.
SEND_LIMIT = 4 * 1024 * 1024


class RedisProtocol(txredisapi.RedisProtocol):
    """txredisapi's protocol with a faster command builder for bulk pushes."""

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

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        proto = RedisProtocol(charset="utf-8", convertNumbers=False)
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        """Nothing to stop: L{RedisConnection} schedules every attempt itself."""

    def connectionError(self, why: str) -> None:
        """Not called: the protocol is given no AUTH or SELECT to fail."""


def redis_endpoint(reactor: Any, settings: RedisSettings) -> IStreamClientEndpoint:
    """
    The plain TCP or Unix endpoint for C{settings}.

    @param reactor: provides C{IReactorTCP}, C{IReactorUNIX} and
        C{IReactorTime} (the running reactor does).
    """
    if settings.unix_socket:
        return UNIXClientEndpoint(reactor, settings.unix_socket, timeout=settings.timeout)
    # A host name may resolve to IPv4 or IPv6 addresses: try them all.
    return HostnameEndpoint(reactor, settings.host, settings.port, timeout=settings.timeout)


# -- the handshake ---------------------------------------------------------------


def _is(expected: str) -> Callable[[Any], bool]:
    return lambda reply: reply == expected


@dataclass(frozen=True)
class Step:
    """
    One command of the handshake.

    @ivar command: what is sent.
    @ivar shown: the command as log lines show it (never a password).
    @ivar accepts: whether a (non-error) reply is the one wanted.
    """

    command: tuple[Any, ...]
    shown: str
    accepts: Callable[[Any], bool] = _is("OK")


def handshake_steps(settings: RedisSettings) -> list[Step]:
    """The commands every new connection starts with, in order."""
    steps = []
    if settings.password is not None:
        # An ACL user would be ("AUTH", user, password), shown "AUTH user".
        steps.append(Step(("AUTH", settings.password), "AUTH"))
    if settings.db is not None:
        steps.append(Step(("SELECT", settings.db), f"SELECT {settings.db}"))
    # Proof that a Redis answers (and that AUTH was not needed after all);
    # only this resets the backoff.  Sentinel's ROLE check would follow.
    steps.append(Step(("PING",), "PING", _is("PONG")))
    return steps


class HandshakeRefused(Exception):
    """Redis answered a handshake command, but not with what was wanted."""


def refusal(step: Step, message: str) -> str:
    """
    What an error reply to a handshake step means, worded to follow
    C{"Redis at host:port "} in a log line.
    """
    code = message.split(" ", 1)[0]
    if code == "NOAUTH":
        return "needs a password (NOAUTH) and redis_password is not set"
    if code == "WRONGPASS" or "invalid password" in message:
        return f"refused the password in redis_password ({message})"
    if step.shown.startswith("AUTH") and "without any password configured" in message:
        return "has no password set, yet redis_password is set (AUTH refused)"
    return f"refused {step.shown} ({message})"


def describe_failure(failure: Any) -> str:
    """A short text for a failure, for one log line."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "no answer in time"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    return failure.getErrorMessage() or failure.type.__name__


# -- the connection --------------------------------------------------------------


class RedisConnection:
    """
    Keeps one connection to Redis open while it is wanted.

    @ivar proto: the connected protocol (handshake done), or None.
    @ivar connections: how many times a connection was made (handshake done).
    @ivar attempts: how many connections were tried.
    @ivar problem: None while the connection is up; else one line saying
        why not (for readiness checks and status lines).
    """

    _log = Logger()

    def __init__(
        self,
        settings: RedisSettings,
        on_up: Callable[[RedisProtocol], None],
        on_down: Callable[[], None],
        backlog: Callable[[], int],
        *,
        clock: IReactorTime,
        endpoint_factory: Callable[[], IStreamClientEndpoint],
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        """
        @param on_up: called with the protocol once connected (handshake done).
        @param on_down: called when that connection is lost.
        @param backlog: how many events wait for Redis, for the log lines.
        @param clock: schedules retries and deadlines.
        @param endpoint_factory: makes the endpoint of each attempt.
        @param retry_policy: the delay before the next attempt after C{n}
            consecutive failures (L{exponential_backoff} by default).
        """
        self._settings = settings
        self._addr = settings.describe()
        self._on_up = on_up
        self._on_down = on_down
        self._backlog = backlog
        self._clock = clock
        self._endpoint_factory = endpoint_factory
        self._retry_policy = retry_policy or exponential_backoff()
        self._steps = handshake_steps(settings)
        self._wanted = False
        self._attempt: defer.Deferred | None = None
        #: the protocol of the attempt in progress, and the step it is at
        self._handshaking: RedisProtocol | None = None
        self._step: Step | None = None
        self._retry_call: Any = None
        self._failures = 0
        self._trouble = Recurring()
        self._down_since = 0.0
        self.proto: RedisProtocol | None = None
        self.connections = 0
        self.attempts = 0
        self.problem: str | None = f"Redis at {self._addr}: not connected yet"

    def start(self) -> None:
        """Connect, and reconnect whenever the connection is lost."""
        self._wanted = True
        self._connect()

    def stop(self) -> defer.Deferred:
        """Stop reconnecting and close the connection; fires once it is closed."""
        self._wanted = False
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._attempt is not None:
            self._attempt.cancel()
        self.problem = f"Redis at {self._addr}: not connected (stopping)"
        proto, self.proto = self.proto, None
        if proto is None or not proto.transport:
            return defer.succeed(None)
        gone = proto.whenDisconnected()
        proto.transport.loseConnection()
        return gone.addCallback(lambda _: None)

    def _connect(self) -> None:
        self._retry_call = None
        self.attempts += 1
        d = defer.maybeDeferred(lambda: self._endpoint_factory().connect(_ProtocolFactory()))
        d.addCallback(lambda proto: defer.Deferred.fromCoroutine(self._handshake(proto)))
        d.addTimeout(self._settings.timeout, self._clock)
        self._attempt = d
        d.addCallbacks(self._connected, self._failed)

    async def _handshake(self, proto: RedisProtocol) -> RedisProtocol:
        """Send the handshake's commands in turn; fail at the first bad reply."""
        self._handshaking = proto
        for step in self._steps:
            self._step = step
            try:
                reply = await proto.execute_command(*step.command)
            except txredisapi.ResponseError as e:
                raise HandshakeRefused(refusal(step, str(e))) from None
            if not step.accepts(reply):
                raise HandshakeRefused(
                    f"answered {step.shown} with {str(reply)[:60]!r}: is it a Redis server?"
                )
        return proto

    def _cause(self, failure: Any) -> str:
        """Why an attempt failed, worded to follow C{"Redis at host:port "}."""
        if failure.check(HandshakeRefused):
            return str(failure.value)
        if self._handshaking is not None:
            # Connected, then no proper answer: the port is not a (working) Redis.
            if failure.check(txredisapi.ConnectionError):
                return "closed the connection before answering"
            if failure.check(defer.TimeoutError, defer.CancelledError):
                shown = self._step.shown if self._step else "the handshake"
                return f"did not answer {shown} within {self._settings.timeout} s"
        return f"is unreachable ({describe_failure(failure)})"

    def _connected(self, proto: RedisProtocol) -> None:
        self._attempt = None
        self._handshaking = self._step = None
        if not self._wanted:
            proto.transport.loseConnection()
            return
        self.proto = proto
        self.connections += 1
        self.problem = None
        if self._trouble.ended():
            self._log.info(
                "Redis at {addr} answers again ({held} events held) after "
                "{seconds:.1f} s without it",
                addr=self._addr,
                held=self._backlog(),
                seconds=self._clock.seconds() - self._down_since,
            )
        self._failures = 0
        proto.transport.SEND_LIMIT = SEND_LIMIT
        proto.whenDisconnected().addCallback(self._lost)
        self._on_up(proto)

    def _failed(self, failure: Any) -> None:
        self._attempt = None
        cause = self._cause(failure)
        proto, self._handshaking, self._step = self._handshaking, None, None
        if proto is not None and proto.transport is not None:
            proto.transport.abortConnection()
        if not self._wanted:
            return
        self._failures += 1
        self.problem = f"Redis at {self._addr} {cause}"
        if self._went_wrong(cause):
            self._log.warn(
                "{problem}; {held} events held, retrying until it answers",
                problem=self.problem,
                held=self._backlog(),
            )
        self._retry_call = self._clock.callLater(
            self._retry_policy(self._failures), self._connect
        )

    def _went_wrong(self, cause: str) -> bool:
        """Note one failure; True when its cause is new (worth a log line)."""
        now = self._clock.seconds()
        if self._trouble.cause is None:
            self._down_since = now
        return self._trouble.happened(cause, now)

    def _lost(self, proto: RedisProtocol) -> None:
        if self.proto is not proto:
            return
        self.proto = None
        self._on_down()
        if not self._wanted:
            return
        self.problem = f"Lost the connection to Redis at {self._addr}; reconnecting"
        self._went_wrong("lost the connection")
        self._log.warn(
            "Lost the connection to Redis at {addr}; {held} events held, reconnecting",
            addr=self._addr,
            held=self._backlog(),
        )
        # The loss counts as the first failure of the outage.
        self._failures = 1
        self._retry_call = self._clock.callLater(self._retry_policy(1), self._connect)
