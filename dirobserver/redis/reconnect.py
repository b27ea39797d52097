"""
The one reconnect loop: a connection kept open, with a capped backoff
between attempts, for as long as it is wanted.

Both long-lived connections use it: the writer's connection to the master
(L{dirobserver.redis.connection.RedisConnection}) and the C{+switch-master}
subscription to a Sentinel (L{dirobserver.redis.sentinel}).  What an attempt
is (where it goes, its handshake) and what a failure or a loss means (the
log lines, the readiness problem) are their owners'; the loop owns only the
timing: one attempt at a time, the retry policy after C{n} consecutive
failures (reset only by a connection made), a loss counting as the first
failure of an outage, and "again, at once" when the owner knows the
connection goes to the wrong place.

The seams are parameters, as in Twisted's C{ClientService}: the clock, the
retry policy and the attempt itself.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from dirobserver.redis.attempt import cancel_pending, close_protocol
from dirobserver.redis.protocol import RespProtocol


class ReconnectLoop:
    """
    Keeps one connection open while it is wanted.

    @ivar proto: the connected protocol (its attempt succeeded), or None.
    @ivar attempts: how many attempts were started.
    @ivar wanted: between L{start} and L{stop}.
    """

    def __init__(
        self,
        attempt: Callable[[], defer.Deferred],
        *,
        clock: IReactorTime,
        retry_policy: Callable[[int], float],
        on_up: Callable[[RespProtocol], None],
        on_failed: Callable[[Failure], None],
        on_lost: Callable[[RespProtocol], None],
    ) -> None:
        """
        @param attempt: makes one attempt: a Deferred of the connected
            protocol (its handshake done), or failing; cancelling it
            abandons it.
        @param retry_policy: the delay before the next attempt after C{n}
            consecutive failures.
        @param on_up: called with the protocol once an attempt succeeded.
        @param on_failed: called with the failure of an attempt while the
            connection is wanted (L{failures} counts it already).
        @param on_lost: called with the protocol when its connection is
            lost while wanted (before the next attempt is scheduled).
        """
        self._attempt_once = attempt
        self._clock = clock
        self._retry_policy = retry_policy
        self._on_up = on_up
        self._on_failed = on_failed
        self._on_lost = on_lost
        self._attempt: defer.Deferred | None = None
        self._retry_call: IDelayedCall | None = None
        #: go again as soon as the attempt under way ends
        self._again = False
        self.failures = 0
        self.wanted = False
        self.attempts = 0
        self.proto: RespProtocol | None = None

    @property
    def connecting(self) -> bool:
        """Whether an attempt is under way."""
        return self._attempt is not None

    def start(self) -> None:
        """Attempt now, and again whenever an attempt fails or the connection is lost."""
        self.wanted = True
        self._connect()

    def stop(self) -> defer.Deferred:
        """Stop attempting and close the connection; fires once it is closed."""
        self.wanted = False
        cancel_pending(self._retry_call, self._attempt)
        self._retry_call = None
        proto, self.proto = self.proto, None
        return close_protocol(proto)

    def reconnect_now(self) -> RespProtocol | None:
        """
        Leave the connection and attempt again at once, without waiting for
        the backoff.  During an attempt, attempt again as soon as it ends
        (leaving the connection it made, if any).

        @return: the protocol left, for its owner to account for and close;
            None when there was none.
        """
        if not self.wanted:
            return None
        if self._attempt is not None:
            self._again = True
            return None
        proto, self.proto = self.proto, None
        if proto is not None:
            self.failures = 1
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = self._clock.callLater(0, self._connect)
        return proto

    def _connect(self) -> None:
        self._retry_call = None
        self._again = False
        self.attempts += 1
        d = self._attempt = defer.maybeDeferred(self._attempt_once)
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, proto: RespProtocol) -> None:
        self._attempt = None
        if not self.wanted:
            proto.transport.loseConnection()
            return
        if self._again:
            # Told to go again while this attempt was under way: what it
            # reached may be the wrong place (the old master).
            proto.transport.loseConnection()
            self._retry_call = self._clock.callLater(0, self._connect)
            return
        self.proto = proto
        self.failures = 0
        proto.whenDisconnected().addCallback(self._lost)
        self._on_up(proto)

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self.wanted:
            return
        self.failures += 1
        self._on_failed(failure)
        delay = 0 if self._again else self._retry_policy(self.failures)
        self._retry_call = self._clock.callLater(delay, self._connect)

    def _lost(self, proto: RespProtocol) -> None:
        if self.proto is not proto:
            return
        self.proto = None
        if not self.wanted:
            return
        # The loss counts as the first failure of the outage.
        self.failures = 1
        self._on_lost(proto)
        self._retry_call = self._clock.callLater(self._retry_policy(1), self._connect)
