"""
A connection to Redis for the worker, as commands that wait for it.

The observer's writer holds events and sends them in rounds; the worker
instead sends one command at a time and needs its reply.  L{RedisLink}
keeps one L{dirobserver.redis.connection.RedisConnection} (the same
handshake, Sentinel, TLS and reconnect loop as the observer's) and offers
L{RedisLink.call}: the command is sent once the connection is up, and sent
again after a reconnect when the connection was lost before its reply.  A
Redis that is down is waited for, not reported as an error per command.

The worker keeps two links: one for the blocking commands (C{BLMOVE},
C{XREADGROUP ... BLOCK}), one for everything else, so that an
acknowledgement never waits behind a block.  A command whose reply does
not come within its deadline (C{timeout} from the configuration, plus the
block for a blocking one) drops the connection, which the loop reopens.

A command Redis refuses for a while (C{NOREPLICAS}: a master with
C{min-replicas-to-write} whose replica is resynchronising; C{LOADING},
C{MASTERDOWN}, C{TRYAGAIN}, C{OOM}; C{READONLY}: a demoted master, which
a Sentinel-following link leaves for the new one) is sent again every second, said once until a
command passes: an acknowledgement refused that way is not a failure of the
file, and the claim key's renewal must not log a traceback every interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet import defer, task
from twisted.logger import Logger

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.connection import RedisConnection
from dirobserver.redis.protocol import RespProtocol
from dirobserver.redis.sentinel import route_for
from dirobserver.util.reactor import IDaemonReactor

#: Refusals that pass by themselves: the command is sent again (see the
#: module docstring).  C{READONLY} too: a demoted master, left for the one
#: the Sentinels name when they are asked (L{RedisConnection.not_master}),
#: or waited out; C{OOM}: consumers and workers free memory.
PASSING = ("NOREPLICAS", "LOADING", "MASTERDOWN", "TRYAGAIN", "READONLY", "OOM")

#: Seconds between two sendings of a command refused for a while.
REFUSED_PAUSE = 1.0


class RedisLink:
    """
    One connection, commands sent when it is up (see the module docstring).

    @ivar lost: how many commands lost their connection before their reply
        (the caller of a command that moves data, like C{BLMOVE}, checks
        what happened to it: see L{dirobserver.worker.queues}).
    """

    _log = Logger()

    def __init__(self, settings: RedisSettings, reactor: IDaemonReactor) -> None:
        self._settings = settings
        self._reactor = reactor
        self.connection = RedisConnection(
            settings, self._up, self._down, lambda: 0, clock=reactor,
            route=route_for(reactor, settings),
        )
        self.proto: RespProtocol | None = None
        self._waiting: list[defer.Deferred] = []
        self.lost = 0
        #: the refusal said (None: the last command passed)
        self._refused: str | None = None
        self._stopping = False

    def start(self) -> None:
        """Connect, and keep connecting."""
        self.connection.start()

    def stop(self) -> defer.Deferred:
        """Close; commands still waiting fail with C{ConnectionError}."""
        self._stopping = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(txredisapi.ConnectionError("stopping"))
        return self.connection.stop()

    def _up(self, proto: RespProtocol) -> None:
        self.proto = proto
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:  # a waiter cancelled (a stop before Redis answered)
                d.callback(proto)

    def _down(self) -> None:
        self.proto = None

    def _when_up(self) -> defer.Deferred:
        if self.proto is not None:
            return defer.succeed(self.proto)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return d

    async def call(self, *command: Any, block: float = 0.0, retry: bool = True) -> Any:
        """
        Send C{command} once connected; its reply (an error reply raises
        C{txredisapi.ResponseError}).

        @param block: seconds the command may block in Redis (added to the deadline).
        @param retry: send it again when the connection is lost before the
            reply; else raise C{txredisapi.ConnectionError}.
        """
        return await self._answered(lambda proto: proto.execute_command(*command),
                                    self._settings.timeout + block, retry)

    async def _answered(self, send: Callable[[Any], defer.Deferred], deadline: float,
                        retry: bool = True) -> Any:
        """
        C{send(protocol)} once connected, under C{deadline}; its result.  A
        connection lost before the reply (or past the deadline, which drops
        it) counts in C{lost} and sends again, unless not C{retry}; so is
        one refused for a while (L{PASSING}), unless not C{retry}.
        """
        while True:
            proto = await self._when_up()
            d = send(proto)
            d.addTimeout(deadline, self._reactor)
            try:
                reply = await d
            except txredisapi.ResponseError as e:
                if str(e).startswith("READONLY"):
                    # A demoted master: leave it whether or not the command
                    # is sent again here (a blocking take's caller waits).
                    self.connection.not_master(str(e))
                if not retry or not str(e).startswith(PASSING):
                    raise
                await self._refused_for_now(str(e))
                continue
            except txredisapi.ConnectionError:
                self.lost += 1
            except defer.TimeoutError:
                self.lost += 1
                proto.transport.abortConnection()
            else:
                if self._refused is not None:
                    self._refused = None
                    self._log.info("Redis at {redis} accepts the worker's commands again",
                                   redis=self._settings.describe())
                return reply
            if not retry:
                raise txredisapi.ConnectionError("lost before the reply")

    async def _refused_for_now(self, error: str) -> None:
        """Say a passing refusal (once until a command passes), and wait before sending again."""
        reason = error.split(" ", 1)[0]
        if reason != self._refused:
            self._refused = reason
            self._log.warn("Redis at {redis} refused a command for now ({error}); sending it again "
                           "every second", redis=self._settings.describe(), error=error)
        await task.deferLater(self._reactor, REFUSED_PAUSE, lambda: None)
        if self._stopping:
            raise txredisapi.ConnectionError("stopping")
