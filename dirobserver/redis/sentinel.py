"""
Finding the master through Redis Sentinel, and following it when it moves.

The rules are those the Redis documentation gives Sentinel clients:

 1. Before every connection attempt, ask the Sentinels in turn, each with a
    short deadline (L{SENTINEL_TIMEOUT}), C{SENTINEL get-master-addr-by-name};
    the first that names the master goes to the head of the list.  A master
    is never remembered from one connection to the next.
 2. Check with C{ROLE} that the node named is a master (a step of the
    handshake, see L{dirobserver.redis.connection.handshake_steps}); if it is not,
    the attempt fails and the next one (with the capped backoff) starts over
    at 1.
 3. Subscribe to C{+switch-master} on one Sentinel (L{_SwitchWatcher}): a
    switch closes the connection and connects to the new master at once,
    instead of waiting for errors or for the backoff.
 4. A node that refuses a write with C{READONLY} (a master demoted to a
    replica) is left at once too (the writer calls
    L{dirobserver.redis.connection.RedisConnection.not_master}).

txredisapi's own C{Sentinel.master_for} is not used: it cannot do TLS, and
its connection handler has the traps L{dirobserver.redis.connection} avoids.

After a switch the writer reconnects, and a reconnect makes the core list
every directory: what the old master acknowledged and asynchronous
replication lost is announced again, for every file still present.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.attempt import AttemptFailed, Step, connect_and_handshake
from dirobserver.redis.connection import RedisConnection, Route, address, auth_steps, client_endpoint
from dirobserver.redis.protocol import RespProtocol
from dirobserver.redis.reconnect import ReconnectLoop
from dirobserver.util.backoff import Recurring, exponential_backoff
from dirobserver.util.reactor import IDaemonReactor

#: The longest wait for one Sentinel's answer (seconds): a Sentinel that is
#: down must not hold up the others for the whole C{timeout}.
SENTINEL_TIMEOUT = 1.0

#: The channel on which Sentinels announce a new master.
SWITCH_CHANNEL = "+switch-master"


def route_for(reactor: IDaemonReactor, settings: RedisSettings) -> Route:
    """The route of C{settings}: through the Sentinels when there are some."""
    if settings.sentinels:
        return SentinelRoute(reactor, settings)
    return Route(settings, lambda: client_endpoint(reactor, settings))


def _named(reply: Any) -> bool:
    return reply is None or (isinstance(reply, list) and len(reply) == 2)


class NoMaster(AttemptFailed):
    """No Sentinel named the master (each one's reason is in the text)."""


class SentinelRoute(Route):
    """
    Connections go to the master the Sentinels name (see the module
    docstring).

    @ivar located: C{(host, port)} of the node the current attempt or
        connection went to, or None while the Sentinels are being asked.
    @ivar sentinels: C{(host, port)} of each Sentinel, the last one that
        answered first.
    @ivar master_name: the name the Sentinels know the master by.
    """

    follows_master = True

    def __init__(self, reactor: IDaemonReactor, settings: RedisSettings) -> None:
        self._reactor = reactor
        self._settings = settings
        self.master_name = str(settings.sentinel_master)
        self._timeout = min(settings.timeout, SENTINEL_TIMEOUT)
        self._auth = auth_steps(settings.sentinel_username, settings.sentinel_password)
        #: where is the master?  (a reply of None: no master of that name)
        self.query = Step(
            ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name),
            "SENTINEL get-master-addr-by-name", _named,
        )
        self._connection: RedisConnection | None = None
        self._watcher = _SwitchWatcher(self, reactor)
        self.sentinels = list(settings.sentinels)
        self.located: tuple[str, int] | None = None

    def describe(self) -> str:
        """C{host:port (master NAME per Sentinel)} once located."""
        if self.located is None:
            return self._settings.describe()
        return f"{address(*self.located)} (master {self.master_name} per Sentinel)"

    def host(self) -> str:
        """The host of the node located last."""
        return self.located[0] if self.located else ""

    def endpoint(self) -> defer.Deferred[IStreamClientEndpoint]:
        """Ask the Sentinels, then the endpoint of the master they name."""
        self.located = None
        return defer.Deferred.fromCoroutine(self._locate())

    async def _locate(self) -> IStreamClientEndpoint:
        problems = []
        for sentinel in list(self.sentinels):
            try:
                proto = await self.ask(sentinel, [self.query])
            except AttemptFailed as e:
                problems.append(f"Sentinel {address(*sentinel)} {e}")
                continue
            proto.transport.loseConnection()
            reply = proto.handshake_replies[-1]
            if reply is None:
                problems.append(
                    f"Sentinel {address(*sentinel)} knows no master named {self.master_name!r}")
                continue
            # The one that answered is asked first next time.
            self.sentinels.remove(sentinel)
            self.sentinels.insert(0, sentinel)
            self.located = (reply[0], int(reply[1]))
            return client_endpoint(self._reactor, self._settings, *self.located)
        raise NoMaster(f"was named by no Sentinel ({'; '.join(problems)})")

    def ask(self, sentinel: tuple[str, int], steps: list[Step]) -> defer.Deferred:
        """Connect to one Sentinel (TLS and AUTH as configured) and send C{steps}."""
        settings = self._settings
        host, port = sentinel
        tls_failure = None
        if settings.tls:
            from dirobserver.redis import tls

            tls_failure = lambda reason: tls.describe_failure(reason, settings, host)  # noqa: E731
        try:
            endpoint = client_endpoint(self._reactor, settings, host, port)
        except Exception as e:  # a TLS file that cannot be used
            return defer.fail(AttemptFailed(f"cannot be reached with TLS: {e}"))
        return connect_and_handshake(
            endpoint, self._auth + steps, self._timeout, self._reactor,
            password_key="redis_sentinel_password", tls_failure=tls_failure,
        )

    def watch(self, connection: RedisConnection) -> None:
        """Follow C{+switch-master} for C{connection}."""
        self._connection = connection
        self._watcher.start()

    def unwatch(self) -> defer.Deferred:
        """Stop following; fires once the subscription is closed."""
        self._connection = None
        return self._watcher.stop()

    def master_is(self, where: tuple[str, int], source: str) -> None:
        """
        A Sentinel says the master is at C{where}: if the connection is (or
        is going) elsewhere, go there now.
        """
        connection = self._connection
        if connection is None:
            return
        if connection.connecting:
            # Still asking the Sentinels (they know already), or going there.
            if self.located is None or self.located == where:
                return
        elif connection.proto is not None and self.located == where:
            return
        connection.reconnect_now(f"is not the master any more ({source} names {address(*where)})")


class _SwitchWatcher:
    """
    One subscription to C{+switch-master} on a Sentinel, kept open (on the
    next Sentinel, with the capped backoff: L{ReconnectLoop}) for as long as
    it is wanted.

    Right before subscribing it asks that Sentinel where the master is: a
    switch missed while not subscribed is caught up at once.
    """

    _log = Logger()

    def __init__(self, route: SentinelRoute, reactor: IDaemonReactor) -> None:
        self._route = route
        self._reactor = reactor
        self._steps = [route.query, Step(("SUBSCRIBE", SWITCH_CHANNEL), f"SUBSCRIBE {SWITCH_CHANNEL}",
                                          lambda reply: isinstance(reply, list))]
        self._loop = ReconnectLoop(
            lambda: defer.Deferred.fromCoroutine(self._first_answer()),
            clock=reactor,
            retry_policy=exponential_backoff(),
            on_up=self._subscribed,
            on_failed=self._failed,
            on_lost=self._lost,
        )
        #: the Sentinel the subscription (or its attempt) went to
        self._sentinel: tuple[str, int] | None = None
        self._trouble = Recurring()

    @property
    def proto(self) -> RespProtocol | None:
        """The subscribed protocol, or None."""
        return self._loop.proto

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> defer.Deferred:
        return self._loop.stop()

    async def _first_answer(self) -> RespProtocol:
        problems = []
        for sentinel in list(self._route.sentinels):
            try:
                proto = await self._route.ask(sentinel, self._steps)
            except AttemptFailed as e:
                problems.append(f"Sentinel {address(*sentinel)} {e}")
                continue
            self._sentinel = sentinel
            return proto
        raise NoMaster("; ".join(problems))

    def _subscribed(self, proto: RespProtocol) -> None:
        where = address(*self._sentinel) if self._sentinel else "?"
        if self._trouble.ended():
            self._log.info("Following master switches again ({channel} on Sentinel {sentinel})",
                           channel=SWITCH_CHANNEL, sentinel=where)
        proto.on_push = self._pushed
        named = proto.handshake_replies[-2]
        if named is not None:
            self._route.master_is((named[0], int(named[1])), f"Sentinel {where}")

    def _pushed(self, reply: Any) -> None:
        """A message on the channel subscribed to."""
        if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == "message"):
            return
        # "<name> <old host> <old port> <new host> <new port>"
        parts = str(reply[2]).split()
        if len(parts) == 5 and parts[0] == self._route.master_name and parts[4].isdigit():
            self._route.master_is((parts[3], int(parts[4])), f"{SWITCH_CHANNEL} from a Sentinel")

    def _failed(self, failure: Failure) -> None:
        cause = str(failure.value) if failure.check(AttemptFailed) else failure.getErrorMessage()
        if self._trouble.happened(cause, self._reactor.seconds()):
            self._log.warn(
                "Cannot follow master switches ({channel}): {cause}; a switch is noticed "
                "by errors until a Sentinel answers",
                channel=SWITCH_CHANNEL, cause=cause,
            )

    def _lost(self, proto: RespProtocol) -> None:
        self._trouble.happened("lost", self._reactor.seconds())
