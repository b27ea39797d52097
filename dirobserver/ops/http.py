"""
The operations HTTP server: C{/metrics}, C{/livez}, C{/readyz}.

A small C{twisted.web} site on any server endpoint description
(C{--metrics=tcp:9108:interface=127.0.0.1}, L{DEFAULT_ENDPOINT}):

  - C{/metrics}: the Prometheus text format of L{dirobserver.ops.metrics}.
  - C{/livez}: 200 when C{core.alive()}, else 503; the body is JSON,
    C{{"alive": true, "problems": [...]}}.
  - C{/readyz}: 200 when C{core.ready_problem()} is None, else 503; the body
    is JSON, C{{"ready": true, "problems": [...]}}.
  - anything else: 404.

The C{problems} of both bodies are C{core.problems()}: one short line for
each thing that is not well, whether or not it decides the status code (a
configured directory that does not exist leaves the daemon ready, but is
listed), with the reason of a 503 first.

Requests are not logged: a scrape every few seconds would otherwise fill
the log with access lines.  Neither are Twisted's own lines about the port
(see L{dirobserver.ops.logs}): one line of ours says where the endpoints
are.  C{prometheus_client.twisted} is not used: it imports the global
reactor at import time.

An endpoint that cannot listen (a port in use) refuses the start
(L{StartRefused}): under a supervisor, a daemon without its health
endpoints would look dead, or worse, healthy to nobody.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from dirobserver.ops import metrics
from dirobserver.util.failures import StartRefused

#: The endpoint to use in examples: loopback only, Prometheus's exporter
#: port range.
DEFAULT_ENDPOINT = "tcp:9108:interface=127.0.0.1"

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"

#: What a handler returns: HTTP status, content type, body.
Reply = tuple[int, str, bytes]


def check_endpoint(description: str) -> str | None:
    """
    Parse a server endpoint description without listening.

    @return: None when it can be used, else the problem in one line.
    """
    try:
        # The parsers only build an endpoint object; nothing touches the
        # reactor until listen(), so none is needed (nor imported) here.
        endpoint = serverFromString(None, description)
    except Exception as e:  # the parsers raise ValueError, TypeError, OSError...
        return f"{description!r} is not a server endpoint ({e}); for example {DEFAULT_ENDPOINT}"
    # The TCP parser converts the port with int() only; an out-of-range port
    # would fail at listen time, after twistd daemonized.
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        return f"{description!r}: port {port} is out of range (0-65535)"
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_found() -> Reply:
    return 404, _TEXT, b"not found\n"


class _Page(Resource):
    """
    A leaf answering GET and HEAD from C{produce()}: 404 below it, 405 for
    other methods (plain text, not twisted.web's HTML error pages).
    """

    isLeaf = True

    def __init__(self, produce: Callable[[], Reply]) -> None:
        super().__init__()
        self._produce = produce

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            code, content_type, body = 405, _TEXT, b"method not allowed\n"
        elif request.postpath:  # /metrics/anything
            code, content_type, body = _not_found()
        else:
            code, content_type, body = self._produce()
        request.setResponseCode(code)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body


class _Root(Resource):
    """The three pages; every other path, C{/} included, is 404."""

    def __init__(self, pages: dict[bytes, Resource]) -> None:
        super().__init__()
        self._missing = _Page(_not_found)
        for name, page in pages.items():
            self.putChild(name, page)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._missing


class _QuietSite(Site):
    """A L{Site} that writes no access log line per request."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


class Pages:
    """
    The replies of the three pages, read from C{core} on each request.

    @ivar registry: the private Prometheus registry of C{core}'s metrics.
    """

    _log = Logger()

    def __init__(self, core: Any, registry: CollectorRegistry | None = None) -> None:
        """
        @param registry: the metrics to serve (the worker's); the
            observer's, read from C{core}, by default.
        """
        self.core = core
        self.registry = registry if registry is not None else metrics.registry(core)
        self._collect_failing = False

    def metrics(self) -> Reply:
        try:
            body = generate_latest(self.registry)
        except Exception as e:
            # A bug, not bad input: one traceback per episode, not per scrape.
            if not self._collect_failing:
                self._collect_failing = True
                self._log.failure("Collecting metrics failed")
            return 500, _TEXT, f"collecting metrics failed: {_one_line(str(e))}\n".encode()
        self._collect_failing = False
        # The classic text format (what generate_latest writes for names
        # like ours), declared as such so that every Prometheus accepts it.
        return 200, CONTENT_TYPE_PLAIN_0_0_4, body

    def livez(self) -> Reply:
        # When not alive, core.problems() says why first.
        return self._health("alive", self.core.alive(), None)

    def readyz(self) -> Reply:
        problem = self.core.ready_problem()
        return self._health("ready", problem is None, problem)

    def _health(self, verdict: str, well: bool, reason: str | None) -> Reply:
        """The JSON body of /livez and /readyz: the verdict and the problems, reason first."""
        problems = [_one_line(p) for p in self.core.problems()]
        if reason is not None:
            reason = _one_line(reason)
            problems = [reason] + [p for p in problems if p != reason]
        body = json.dumps({verdict: well, "problems": problems}) + "\n"
        return 200 if well else 503, _JSON, body.encode("ascii")


def make_site(core: Any, registry: CollectorRegistry | None = None) -> Site:
    """The L{Site} serving L{Pages} for C{core} (and C{registry}, see L{Pages})."""
    pages = Pages(core, registry)
    root = _Root({
        b"metrics": _Page(pages.metrics),
        b"livez": _Page(pages.livez),
        b"readyz": _Page(pages.readyz),
    })
    site = _QuietSite(root)
    site.displayTracebacks = False
    return site


class MetricsService(Service):
    """
    Listens on an endpoint description while running, serving L{make_site}.

    A port that cannot be opened (already in use, no permission) is one log
    line, and L{startService} fails with L{StartRefused}: the daemon does
    not start without the endpoints it was asked for.

    @ivar port: the listening port while it listens, else None.
    @ivar problem: why listening failed (one line), else None.
    @ivar listening: fires with L{port} once listening, or with None when it
        failed (never with a failure); None before L{startService}.
    """

    _log = Logger()

    def __init__(self, endpoint_description: str, core: Any, reactor: IReactorCore,
                 refused_status: int = os.EX_OSERR,
                 registry: CollectorRegistry | None = None) -> None:
        """
        @param refused_status: the exit status of L{StartRefused}
            (C{dirobserver.app.exits.EXIT_CANNOT_LISTEN}).
        @param registry: the metrics to serve (the worker's); the
            observer's, read from C{core}, by default.
        """
        self.description = endpoint_description
        self._refused_status = refused_status
        self.site = make_site(core, registry)
        self._reactor = reactor
        self.port: IListeningPort | None = None
        self.problem: str | None = None
        self.listening: Deferred | None = None

    def startService(self) -> Deferred[None]:
        """
        Listen.

        @return: a Deferred that fires once listening, or fails with
            L{StartRefused} (the reason in one line) when it cannot.
        """
        super().startService()
        self.problem = None
        # check_endpoint() should have caught a bad description already; if
        # not, this is one line too, never a traceback out of startService.
        self.listening = maybeDeferred(lambda: serverFromString(self._reactor, self.description).listen(self.site))
        self.listening.addCallbacks(self._listened, self._cannot_listen)
        outcome: Deferred[None] = Deferred()

        def tell(port: IListeningPort | None) -> IListeningPort | None:
            if self.problem is not None:
                outcome.errback(StartRefused(f"{self.problem}; stopping", self._refused_status))
            else:
                outcome.callback(None)
            return port

        self.listening.addCallback(tell)
        return outcome

    def _listened(self, port: IListeningPort) -> IListeningPort | None:
        if not self.running:  # stopped while the listen was under way
            port.stopListening()
            return None
        self.port = port
        self._log.info("Metrics and health endpoints (/metrics, /livez, /readyz) on {address}",
                       address=_address(port, self.description))
        return port

    def _cannot_listen(self, failure: Failure) -> None:
        self.problem = f"cannot serve /metrics on {self.description}: {_one_line(failure.getErrorMessage())}"
        return None

    def stopService(self) -> Deferred | None:
        """Stop listening; the Deferred fires when the port is closed."""
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening)


def _address(port: IListeningPort, description: str) -> str:
    """Where a port listens: C{host:port} for TCP (the real port, when 0 was asked), else the description."""
    host = port.getHost()
    if isinstance(host, (IPv4Address, IPv6Address)):
        return f"{host.host}:{host.port}"
    return description
