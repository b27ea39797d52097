"""
The connection to Redis: one txredisapi protocol, opened, watched and
reopened with a capped backoff for as long as it is wanted.

txredisapi is used at its protocol level, on one connection that this module
opens itself.  That sidesteps the traps of txredisapi's connection handler: a
command sent while disconnected with C{reconnect=True} never returns; a
failed AUTH or SELECT stops reconnecting for good; a C{MULTI} can hang after a
restart; pools can deadlock.  Every step here has a deadline (C{timeout} from
the configuration): the TCP or Unix connection, then AUTH and SELECT.

L{dirobserver.writer} is its only user: it sends commands on L{proto} while
it is set, and is told when it comes and goes.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import txredisapi
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.logger import Logger

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
    """
    Builds one protocol; provides what txredisapi's protocol expects of its
    factory when AUTH or SELECT fails (it reports; we decide to retry).
    """

    isLazy = False
    noisy = False

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.error: str | None = None

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        proto = RedisProtocol(
            charset="utf-8",
            password=self.settings.password,
            dbid=self.settings.db,
            convertNumbers=False,
        )
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        """Nothing to stop: L{RedisConnection} schedules every attempt itself."""

    def connectionError(self, why: str) -> None:
        self.error = why


class RedisConnection:
    """
    Keeps one connection to Redis open while it is wanted.

    @ivar proto: the connected protocol, or None.
    @ivar connections: how many times a connection was made.
    """

    _log = Logger()
    initial_delay = 0.1
    max_delay = 2.0

    def __init__(
        self,
        settings: RedisSettings,
        reactor: Any,
        on_up: Callable[[RedisProtocol], None],
        on_down: Callable[[], None],
        backlog: Callable[[], int],
    ) -> None:
        """
        @param on_up: called with the protocol once connected (AUTH, SELECT done).
        @param on_down: called when that connection is lost.
        @param backlog: how many events wait for Redis, for the log lines.
        """
        self._settings = settings
        self._reactor = reactor
        self._on_up = on_up
        self._on_down = on_down
        self._backlog = backlog
        self._wanted = False
        self._attempt: defer.Deferred | None = None
        self._retry_call: Any = None
        self._failures = 0
        self.proto: RedisProtocol | None = None
        self.connections = 0

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
        proto, self.proto = self.proto, None
        if proto is None or not proto.transport:
            return defer.succeed(None)
        gone = proto.whenDisconnected()
        proto.transport.loseConnection()
        return gone.addCallback(lambda _: None)

    def _endpoint(self) -> Any:
        s = self._settings
        if s.unix_socket:
            return UNIXClientEndpoint(self._reactor, s.unix_socket, timeout=s.timeout)
        # A host name may resolve to IPv4 or IPv6 addresses: try them all.
        return HostnameEndpoint(self._reactor, s.host, s.port, timeout=s.timeout)

    def _connect(self) -> None:
        self._retry_call = None
        factory = _ProtocolFactory(self._settings)
        d = self._endpoint().connect(factory)
        d.addCallback(self._handshake, factory)
        d.addTimeout(self._settings.timeout, self._reactor)
        d.addCallbacks(self._connected, self._failed)
        self._attempt = d

    def _handshake(self, proto: RedisProtocol, factory: _ProtocolFactory) -> defer.Deferred:
        """Wait until AUTH and SELECT are done, or the connection is closed."""
        ready = proto.whenConnected()
        lost = proto.whenDisconnected()

        def cancel(_: Any) -> None:
            proto.transport.abortConnection()

        first = defer.DeferredList([ready, lost], fireOnOneCallback=True, consumeErrors=True)
        outer: defer.Deferred = defer.Deferred(cancel)

        def decide(result: Any) -> None:
            if outer.called:
                return
            _value, index = result
            if index == 0:
                outer.callback(proto)
            else:
                outer.errback(
                    txredisapi.ConnectionError(factory.error or "connection closed by the server")
                )

        first.addCallback(decide)
        return outer

    def _connected(self, proto: RedisProtocol) -> None:
        self._attempt = None
        if not self._wanted:
            proto.transport.loseConnection()
            return
        self.proto = proto
        self.connections += 1
        if self._failures:
            self._log.info(
                "Redis at {addr} answers again ({held} events held)",
                addr=self._settings.describe(),
                held=self._backlog(),
            )
        self._failures = 0
        proto.transport.SEND_LIMIT = SEND_LIMIT
        proto.whenDisconnected().addCallback(self._lost)
        self._on_up(proto)

    def _failed(self, failure: Any) -> None:
        self._attempt = None
        if not self._wanted:
            return
        self._failures += 1
        if self._failures == 1:
            self._log.warn(
                "Redis at {addr} is unreachable ({why}); {held} events held, "
                "retrying until it answers",
                addr=self._settings.describe(),
                why=describe_failure(failure),
                held=self._backlog(),
            )
        delay = min(self.initial_delay * 2 ** (self._failures - 1), self.max_delay)
        self._retry_call = self._reactor.callLater(delay * random.uniform(0.8, 1.2), self._connect)

    def _lost(self, proto: RedisProtocol) -> None:
        if self.proto is not proto:
            return
        self.proto = None
        self._on_down()
        if not self._wanted:
            return
        self._log.warn(
            "Lost the connection to Redis at {addr}; {held} events held, reconnecting",
            addr=self._settings.describe(),
            held=self._backlog(),
        )
        self._failures = 1
        self._retry_call = self._reactor.callLater(self.initial_delay, self._connect)


def describe_failure(failure: Any) -> str:
    """A short text for a failure, for one log line."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "no answer in time"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    return failure.getErrorMessage() or failure.type.__name__
