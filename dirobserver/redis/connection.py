"""
The connection to Redis: one protocol (L{dirobserver.redis.protocol}),
opened, checked, watched and reopened with a capped backoff
(L{dirobserver.redis.reconnect}) for as long as it is wanted.

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

Each attempt is one L{dirobserver.redis.attempt.connect_and_handshake}; the commands it starts with
are L{handshake_steps}'s.

The seams are parameters, as in Twisted's C{ClientService}: the clock, the
retry policy, and the route (L{Route}: where each attempt goes).  A plain
L{Route} dials the address of the settings (TCP, TLS with C{redis_tls} (see
L{dirobserver.redis.tls}), or a Unix socket); L{dirobserver.redis.sentinel}'s asks the
Sentinels before every attempt, adds a C{ROLE} check to the handshake and
calls L{RedisConnection.reconnect_now} when the master moves.

L{dirobserver.redis.writer} is its only user: it sends commands on L{proto} while
it is set, and is told when it comes and goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.attempt import AttemptFailed, Step, connect_and_handshake, is_reply
from dirobserver.redis.protocol import RespProtocol, raise_send_limit
from dirobserver.redis.reconnect import ReconnectLoop
from dirobserver.util.backoff import Recurring, exponential_backoff
from dirobserver.util.failures import describe_failure
from dirobserver.util.reactor import IDaemonReactor


def client_endpoint(
    reactor: IDaemonReactor, settings: RedisSettings, host: str | None = None, port: int | None = None
) -> IStreamClientEndpoint:
    """
    The endpoint for C{settings} (TCP, TLS when C{redis_tls}, or Unix), or
    for C{host:port} with the same TLS settings (a node a Sentinel named, a
    Sentinel).

    @param reactor: the daemon's (TCP, Unix sockets and timers).
    @raise dirobserver.redis.tls.TLSSetupError: a TLS file cannot be used.
    """
    if settings.unix_socket and host is None:
        return UNIXClientEndpoint(reactor, settings.unix_socket, timeout=settings.timeout)
    if host is None or not port:
        default_host, default_port = settings.tcp_address()
        host = host if host is not None else default_host
        port = port or default_port
    # A host name may resolve to IPv4 or IPv6 addresses: try them all.
    endpoint = HostnameEndpoint(reactor, host, port, timeout=settings.timeout)
    if settings.tls:
        from dirobserver.redis import tls  # OpenSSL is loaded only when TLS is wanted

        return wrapClientTLS(tls.client_creator(settings, str(host)), endpoint)
    return endpoint


def address(host: str, port: int) -> str:
    """C{host:port}, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Route:
    """
    Where connections go: the one address of the settings.

    @cvar follows_master: whether the master may move (L{dirobserver.redis.sentinel}).
    """

    follows_master = False

    def __init__(
        self,
        settings: RedisSettings,
        endpoint_factory: Callable[[], IStreamClientEndpoint],
    ) -> None:
        """
        @param endpoint_factory: a new endpoint per attempt (L{client_endpoint}
            of the settings, as L{dirobserver.redis.sentinel.route_for} makes
            it, or a test's).
        """
        self._settings = settings
        self._factory = endpoint_factory

    def endpoint(self) -> defer.Deferred[IStreamClientEndpoint]:
        """The endpoint of the next attempt, once known (here: at once)."""
        return defer.maybeDeferred(self._factory)

    def describe(self) -> str:
        """Where connections go, for log lines."""
        return self._settings.describe()

    def host(self) -> str:
        """The host of the last endpoint (the name TLS verifies by default)."""
        return self._settings.host or ""

    def watch(self, connection: RedisConnection) -> None:
        """Start following the master's moves for C{connection}: nothing moves here."""

    def unwatch(self) -> defer.Deferred:
        """Stop following; fires once done."""
        return defer.succeed(None)


# -- the handshake ---------------------------------------------------------------


def _is_master(reply: Any) -> bool:
    return isinstance(reply, list) and reply[:1] == ["master"]


def _not_master(reply: Any) -> str:
    role = reply[0] if isinstance(reply, list) and reply else reply
    return f"is not a master (ROLE says {role!r}); asking the Sentinels again"


def auth_steps(username: str | None, password: str | None) -> list[Step]:
    """C{AUTH password}, or C{AUTH user password} (Redis 6 ACL users), or nothing."""
    if password is None:
        return []
    if username is None:
        return [Step(("AUTH", password), "AUTH")]
    return [Step(("AUTH", username, password), f"AUTH {username}", user=username)]


def handshake_steps(settings: RedisSettings) -> list[Step]:
    """The commands every new connection starts with, in order."""
    steps = auth_steps(settings.username, settings.password)
    if settings.db is not None:
        steps.append(Step(("SELECT", settings.db), f"SELECT {settings.db}"))
    # Proof that a Redis answers (and that AUTH was not needed after all);
    # only a completed handshake resets the backoff.
    steps.append(Step(("PING",), "PING", is_reply("PONG")))
    if settings.sentinels:
        # The Sentinels may name a node that is no master (yet, or any more).
        steps.append(Step(("ROLE",), "ROLE", _is_master, _not_master))
    return steps


# -- the connection --------------------------------------------------------------


class RedisConnection:
    """
    Keeps one connection to Redis open while it is wanted (the timing is
    L{ReconnectLoop}'s; what an attempt is and what its outcome means,
    here).

    @ivar connections: how many times a connection was made (handshake done).
    @ivar problem: None while the connection is up; else one line saying
        why not (for readiness checks and status lines).
    """

    _log = Logger()

    def __init__(
        self,
        settings: RedisSettings,
        on_up: Callable[[RespProtocol], None],
        on_down: Callable[[], None],
        backlog: Callable[[], int],
        *,
        clock: IReactorTime,
        endpoint_factory: Callable[[], IStreamClientEndpoint] | None = None,
        route: Route | None = None,
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        """
        @param on_up: called with the protocol once connected (handshake done).
        @param on_down: called when that connection is lost.
        @param backlog: how many events wait for Redis, for the log lines.
        @param clock: schedules retries and deadlines.
        @param endpoint_factory: makes the endpoint of each attempt (a plain
            L{Route} of it).
        @param route: where attempts go (instead of C{endpoint_factory});
            one of the two is required.
        @param retry_policy: the delay before the next attempt after C{n}
            consecutive failures (L{exponential_backoff} by default).
        """
        self._settings = settings
        if route is None:
            if endpoint_factory is None:
                raise TypeError("RedisConnection needs a route or an endpoint_factory")
            route = Route(settings, endpoint_factory)
        self._route = route
        self._on_up = on_up
        self._on_down = on_down
        self._backlog = backlog
        self._clock = clock
        self._steps = handshake_steps(settings)
        self._loop = ReconnectLoop(
            self._attempt,
            clock=clock,
            retry_policy=retry_policy or exponential_backoff(),
            on_up=self._connected,
            on_failed=self._failed,
            on_lost=self._lost,
        )
        self._trouble = Recurring()
        self._down_since = 0.0
        self.connections = 0
        self.problem: str | None = f"Redis at {self._route.describe()}: not connected yet"

    @property
    def proto(self) -> RespProtocol | None:
        """The connected protocol (handshake done), or None."""
        return self._loop.proto

    @property
    def attempts(self) -> int:
        """How many connections were tried."""
        return self._loop.attempts

    def describe(self) -> str:
        """Where the connection goes (or went), for log lines."""
        return self._route.describe()

    @property
    def connecting(self) -> bool:
        """Whether an attempt is under way."""
        return self._loop.connecting

    def start(self) -> None:
        """Connect, and reconnect whenever the connection is lost."""
        self._route.watch(self)
        self._loop.start()

    def stop(self) -> defer.Deferred:
        """Stop reconnecting and close the connection; fires once it is closed."""
        closed = self._loop.stop()
        self.problem = f"Redis at {self._route.describe()}: not connected (stopping)"
        gone = [closed, self._route.unwatch()]
        return defer.gatherResults(gone, consumeErrors=True).addCallback(lambda _: None)

    def reconnect_now(self, reason: str) -> None:
        """
        The master moved (a Sentinel said so, or this node refused a write
        as a replica): leave the node connected to and connect again at
        once, asking where the master is, without waiting for the backoff.

        @param reason: worded to follow C{"Redis at host:port "}.
        """
        loop = self._loop
        if not loop.wanted:
            return
        if loop.connecting:
            loop.reconnect_now()  # judged when the attempt ends
            return
        self._log.warn(
            "Redis at {addr} {reason}; connecting to the master the Sentinels name now",
            addr=self._route.describe(),
            reason=reason,
        )
        proto = loop.reconnect_now()
        if proto is not None:
            self.problem = f"Redis at {self._route.describe()} {reason}"
            self._went_wrong(reason)
            self._on_down()
            proto.transport.abortConnection()

    def not_master(self, problem: str) -> bool:
        """
        Redis refused a write as a replica does (C{READONLY}).  With a master
        that moves (Sentinel), leave this node and ask where the master is.

        @return: whether that was done (else the refusal is the writer's to
            retry).
        """
        if not self._route.follows_master:
            return False
        self.reconnect_now(f"refused a write as a replica ({problem})")
        return True

    def _attempt(self) -> defer.Deferred:
        d = defer.maybeDeferred(self._route.endpoint)
        return d.addCallback(self._handshake)

    def _handshake(self, endpoint: IStreamClientEndpoint) -> defer.Deferred:
        tls_failure = None
        if self._settings.tls:
            from dirobserver.redis import tls

            host, settings = self._route.host(), self._settings
            tls_failure = lambda reason: tls.describe_failure(reason, settings, host)  # noqa: E731
        return connect_and_handshake(endpoint, self._steps, self._settings.timeout,
                                     self._clock, tls_failure=tls_failure)

    def _connected(self, proto: RespProtocol) -> None:
        self.connections += 1
        self.problem = None
        if self._trouble.ended():
            self._log.info(
                "Redis at {addr} answers again ({held} events held) after "
                "{seconds:.1f} s without it",
                addr=self._route.describe(),
                held=self._backlog(),
                seconds=self._clock.seconds() - self._down_since,
            )
        raise_send_limit(proto.transport)
        self._on_up(proto)

    def _failed(self, failure: Failure) -> None:
        if failure.check(AttemptFailed):
            cause = str(failure.value)
        elif failure.check("dirobserver.redis.tls.TLSSetupError"):
            cause = f"cannot be reached with TLS: {failure.value}"
        else:
            cause = f"is unreachable ({describe_failure(failure)})"
        self.problem = f"Redis at {self._route.describe()} {cause}"
        if self._went_wrong(cause):
            self._log.warn(
                "{problem}; {held} events held, retrying until it answers",
                problem=self.problem,
                held=self._backlog(),
            )

    def _went_wrong(self, cause: str) -> bool:
        """Note one failure; True when its cause is new (worth a log line)."""
        now = self._clock.seconds()
        if self._trouble.cause is None:
            self._down_since = now
        return self._trouble.happened(cause, now)

    def _lost(self, proto: RespProtocol) -> None:
        self._on_down()
        self.problem = f"Lost the connection to Redis at {self._route.describe()}; reconnecting"
        self._went_wrong("lost the connection")
        self._log.warn(
            "Lost the connection to Redis at {addr}; {held} events held, reconnecting",
            addr=self._route.describe(),
            held=self._backlog(),
        )
