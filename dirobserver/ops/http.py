"""
The operations HTTP server: C{/metrics}, C{/livez}, C{/readyz}.

A small C{twisted.web} site on any server endpoint description
(C{--metrics=tcp:9108:interface=127.0.0.1}, L{DEFAULT_ENDPOINT}):

  - C{/metrics}: the Prometheus text format of L{dirobserver.ops.metrics}.
  - C{/livez}: 200 C{ok} when C{core.alive()}, else 503 and one line.
  - C{/readyz}: 200 C{ready} when C{core.ready_problem()} is None, else 503
    and the problem, one line.
  - anything else: 404.

Requests are not logged: a scrape every few seconds would otherwise fill
the log with access lines.  C{prometheus_client.twisted} is not used: it
imports the global reactor at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from dirobserver.ops import metrics

#: The endpoint to use in examples: loopback only, Prometheus's exporter
#: port range.
DEFAULT_ENDPOINT = "tcp:9108:interface=127.0.0.1"

_TEXT = "text/plain; charset=utf-8"

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
        if self.core.alive():
            return 200, _TEXT, b"ok\n"
        return 503, _TEXT, b"not alive: the event loop or the inotify probe is stuck\n"

    def readyz(self) -> Reply:
        problem = self.core.ready_problem()
        if problem is None:
            return 200, _TEXT, b"ready\n"
        return 503, _TEXT, f"{_one_line(problem)}\n".encode("utf-8", "backslashreplace")


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
    line; the service keeps running without it.  Whoever wants to stop the
    daemon then watches L{listening} or L{problem}.

    @ivar port: the listening port while it listens, else None.
    @ivar problem: why listening failed (one line), else None.
    @ivar listening: fires with L{port} once listening, or with None when it
        failed (never with a failure); None before L{startService}.
    """

    _log = Logger()

    def __init__(self, endpoint_description: str, core: Any, reactor: IReactorCore,
                 registry: CollectorRegistry | None = None) -> None:
        self.description = endpoint_description
        self.site = make_site(core, registry)
        self._reactor = reactor
        self.port: IListeningPort | None = None
        self.problem: str | None = None
        self.listening: Deferred | None = None

    def startService(self) -> None:
        super().startService()
        self.problem = None
        # check_endpoint() should have caught a bad description already; if
        # not, this is one line too, never a traceback out of startService.
        self.listening = maybeDeferred(lambda: serverFromString(self._reactor, self.description).listen(self.site))
        self.listening.addCallbacks(self._listened, self._cannot_listen)

    def _listened(self, port: IListeningPort) -> IListeningPort | None:
        if not self.running:  # stopped while the listen was under way
            port.stopListening()
            return None
        self.port = port
        self._log.info("Serving /metrics, /livez and /readyz on {address}", address=self.description)
        return port

    def _cannot_listen(self, failure: Failure) -> None:
        self.problem = f"cannot serve /metrics on {self.description}: {_one_line(failure.getErrorMessage())}"
        self._log.error("{problem}", problem=self.problem)
        return None

    def stopService(self) -> Deferred | None:
        """Stop listening; the Deferred fires when the port is closed."""
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening)
