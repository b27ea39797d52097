"""
Waiting for replicas after each round (C{redis_wait_replicas}).

Redis acknowledges a write before its replicas have it.  A master that
dies while its replica lags behind takes what the replica lacked with it:
events, and with C{announce_once} their record, so that the next listing
announces those files again (consumers that had taken their events get them
twice).  Under load a replica lags thousands of writes behind: the soak
counted 300 to 2,000 record fields a replica lacked at each master kill.

With C{redis_wait_replicas = N} every round ends with C{WAIT N ms}, and the
next round leaves only once it answers (L{dirobserver.redis.rounds}): the
master is never more than one round ahead of N replicas, so a failover
loses at most the last round.  C{WAIT} never blocks delivery itself: the
events are acknowledged by their C{EXEC} as before; a C{WAIT} that ends
with fewer replicas (a replica down, or too slow) only lets the next round
go, said once until enough replicas answer again.  A C{WAIT} refused (an
ACL user without it, a proxy that does not know it) is said once, and
rounds go on without it on that connection; a demoted master's refusal
(a replica cannot C{WAIT}) is left to the round's C{READONLY}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from txredisapi import ResponseError

from dirobserver.config.settings import RedisSettings
from dirobserver.redis.protocol import RespProtocol


class ReplicaWait:
    """
    The C{WAIT} of each round, and what its answers said.

    @ivar short: rounds whose C{WAIT} ended with fewer replicas than asked.
    """

    _log = Logger()

    def __init__(self, settings: RedisSettings) -> None:
        self.replicas = settings.wait_replicas
        self._seconds = settings.wait_timeout
        self._ms = max(1, round(settings.wait_timeout * 1000))
        self.short = 0
        #: whether fewer replicas than asked answered last (said once)
        self._lacking = False
        #: the connection that refused C{WAIT}, and why (said once per reason)
        self._refused_by: RespProtocol | None = None
        self._refusal: str | None = None

    def wanted(self, proto: RespProtocol) -> bool:
        """Whether the rounds on C{proto} end with a C{WAIT}."""
        return self.replicas > 0 and proto is not self._refused_by

    def send(self, proto: RespProtocol) -> defer.Deferred:
        """Send the C{WAIT} of a round (after its transactions, in the same write)."""
        return proto.execute_command("WAIT", self.replicas, self._ms)

    def answered(self, ok: bool, reply: Any, proto: RespProtocol) -> None:
        """The C{WAIT}'s reply: say what changed (a connection lost is the round's to handle)."""
        if ok and isinstance(reply, int):
            if reply >= self.replicas:
                if self._lacking:
                    self._lacking = False
                    self._log.info("{n} of {wanted} replicas acknowledge each round again",
                                   n=reply, wanted=self.replicas)
                return
            self.short += 1
            if not self._lacking:
                self._lacking = True
                self._log.warn(
                    "Only {n} of {wanted} replicas acknowledged a round within {seconds:g} s "
                    "(redis_wait_timeout): delivering on, each round waiting for them; a failover "
                    "now may lose what they lack (said again when they acknowledge)",
                    n=reply, wanted=self.replicas, seconds=self._seconds)
            return
        if not ok and isinstance(reply, Failure) and reply.check(ResponseError):
            refusal = str(reply.value)
            if not _for_good(refusal):
                return  # a demoted master's: its READONLY moves the writer on
            self._refused_by = proto
            if refusal != self._refusal:
                self._refusal = refusal
                self._log.error("Redis refused WAIT ({error}): rounds go on without waiting for "
                                "replicas on this connection (redis_wait_replicas)", error=refusal)


def _for_good(refusal: str) -> bool:
    """Whether a refused C{WAIT} will be refused on this connection again (ACL, unknown command)."""
    return refusal.startswith("NOPERM") or "unknown command" in refusal.lower()
