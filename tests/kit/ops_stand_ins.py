"""
Shared by the tests of metrics.py and http.py: a stand-in for the
observer's core object, with exactly the attributes that
L{dirobserver.ops.metrics} and L{dirobserver.ops.http} read (see the module
docstring of L{dirobserver.ops.metrics}), as plain values the tests set by hand;
and L{get}, a real HTTP request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from dirobserver.util.stats import DELIVERY_BUCKETS, LISTING_BUCKETS, Histogram


@dataclass
class Section:
    name: str


@dataclass
class Monitor:
    section: Section
    state: str = "watched"
    listings: int = 0
    tree: Tree = field(default_factory=lambda: Tree())
    #: announce_once: what its listings skipped and pruned (None: without)
    once: Once | None = None


@dataclass
class Once:
    """What the metrics read of a section's listings with announce_once."""

    skipped: int = 0
    pruned: int = 0


@dataclass
class Tree:
    """What the metrics read of a section's sub-directories."""

    watched: int = 0
    polled: int = 0
    past_watch_limit: int = 0

    def counts(self) -> dict[str, int]:
        return {"watched": self.watched, "polled": self.polled, "past_watch_limit": self.past_watch_limit}


@dataclass
class Writer:
    delivered_by: dict = field(default_factory=dict)
    held_events: int = 0
    up: bool = True
    reconnects: int = 0
    replica_waits_short: int = 0
    dropped: int = 0
    delivery_seconds: Histogram = field(default_factory=lambda: Histogram(DELIVERY_BUCKETS))

    def held(self) -> int:
        return self.held_events

    def redis_up(self) -> bool:
        return self.up


@dataclass
class FanotifySource:
    """What the metrics read of the fanotify group's source."""

    events: int = 0
    overflows: int = 0
    directories: int = 0
    cached: int = 0
    held: int = 0

    def watch_count(self) -> int:
        return self.directories

    def cached_directories(self) -> int:
        return self.cached

    def backlog(self) -> int:
        return self.held


@dataclass
class InotifySource:
    """What the metrics read of the inotify source."""

    held: int = 0

    def backlog(self) -> int:
        return self.held


@dataclass
class FanotifyGroup:
    source: FanotifySource | None = None


@dataclass
class Core:
    monitors: list = field(default_factory=list)
    fanotify: FanotifyGroup = field(default_factory=FanotifyGroup)
    watcher: InotifySource | None = None
    writer: Writer = field(default_factory=Writer)
    overflows: int = 0
    listing_seconds: Histogram = field(default_factory=lambda: Histogram(LISTING_BUCKETS))
    watchdog_resets: int = 0
    is_alive: bool = True
    problem: str | None = None
    #: what problems() lists besides L{problem}
    others: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.is_alive

    def ready_problem(self) -> str | None:
        return self.problem

    def problems(self) -> list[str]:
        return ([] if self.is_alive else ["not alive: stuck"]) + (
            [self.problem] if self.problem else []) + self.others


class _Body(Protocol):
    """Collects a response body (readBody warns about Agent's own transport)."""

    def __init__(self, done: defer.Deferred) -> None:
        self.chunks: list[bytes] = []
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


@defer.inlineCallbacks
def get(url: str, method: bytes = b"GET"):
    """A real HTTP request with Twisted's client; fires with (status, headers, body)."""
    from twisted.internet import reactor
    from twisted.web.client import Agent

    response = yield Agent(reactor).request(method, url.encode("ascii"))
    done: defer.Deferred = defer.Deferred()
    response.deliverBody(_Body(done))
    body = yield done
    headers = {k.decode().lower(): b", ".join(v).decode() for k, v in response.headers.getAllRawHeaders()}
    return response.code, headers, body
