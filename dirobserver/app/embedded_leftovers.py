"""
What an embedded Redis still holds when it is stopped: said in one line.

C{--embedded-redis} runs a server that keeps nothing on disk, so the events
still in its queues when the daemon stops are gone for good.  Before the
server is stopped (after the writer delivered what it held), L{say_queued}
asks it for the length of every configured queue (C{LLEN}, or C{XLEN} for a
stream) on a connection of its own and logs one line when anything is
left, so that losing them is never silent.  Nothing depends on the answer:
a server that does not answer within the deadline is stopped all the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

from dirobserver.config.settings import SectionSettings
from dirobserver.redis.protocol import RespFactory, RespProtocol
from dirobserver.util.reactor import IDaemonReactor

#: Seconds the server has to answer before it is stopped anyway.
COUNT_TIMEOUT = 2.0

_log = Logger()


def queues_of(sections: Iterable[SectionSettings]) -> list[tuple[str, str]]:
    """Each configured queue once, with its type (C{list} or C{stream})."""
    return list(dict.fromkeys((s.queue, s.queue_type) for s in sections))


def _ask(proto: RespProtocol, queues: list[tuple[str, str]]) -> Deferred[Any]:
    commands = [("XLEN" if kind == "stream" else "LLEN", name) for name, kind in queues]

    def close(result: Any) -> Any:
        proto.transport.loseConnection()
        return result

    return proto.pipeline(commands).addBoth(close)


def say_queued(reactor: IDaemonReactor, host: str, port: int, queues: list[tuple[str, str]]) -> Deferred[int]:
    """
    Count what the queues hold and log one line when it is not nothing.

    @return: a Deferred that fires with the number of events left (-1 when
        the server did not tell); it never fails.
    """
    endpoint = HostnameEndpoint(reactor, host, port, timeout=COUNT_TIMEOUT)
    d: Deferred[Any] = endpoint.connect(RespFactory())
    d.addCallback(_ask, queues)
    d.addTimeout(COUNT_TIMEOUT, reactor)

    def said(replies: list[Any]) -> int:
        left = [(name, n) for (name, _), n in zip(queues, replies, strict=True) if isinstance(n, int) and n > 0]
        total = sum(n for _, n in left)
        if total:
            _log.warn(
                "Embedded Redis stopping with {total} events still queued ({queues}): they are lost, "
                "it keeps nothing on disk (--embedded-redis is for trying dirobserver out, not for servers)",
                total=total, queues=", ".join(f"{name}: {n}" for name, n in left),
            )
        return total

    def unknown(failure: Any) -> int:
        _log.warn(
            "Embedded Redis stopping; could not count the events still queued in it ({error}): "
            "whatever it holds is lost",
            error=failure.getErrorMessage() or failure.type.__name__,
        )
        return -1

    return d.addCallback(said).addErrback(unknown)
