"""
L{dirobserver.ops.http}: the real site on a real loopback port, fetched with a
real HTTP client; the endpoint check; a port already in use.
"""

from __future__ import annotations

import json

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from dirobserver.ops.http import DEFAULT_ENDPOINT, MetricsService, check_endpoint
from dirobserver.util.failures import StartRefused
from tests.kit.ops_stand_ins import Core, Monitor, Section, get


class Events:
    """Log events published while a test runs."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def of(self, namespace: str) -> list[dict]:
        return [e for e in self.events if e.get("log_namespace", "").startswith(namespace)]


class SiteTests(unittest.TestCase):
    def setUp(self) -> None:
        self.core = Core(monitors=[Monitor(Section("stage1"))])
        self.service = MetricsService("tcp:0:interface=127.0.0.1", self.core, reactor)
        self.service.startService()
        self.addCleanup(self.stop)
        self.base = f"http://127.0.0.1:{self.service.port.getHost().port}"

    def stop(self):
        if self.service.running:
            return self.service.stopService()

    @defer.inlineCallbacks
    def test_readyz_follows_the_core(self):
        code, headers, body = yield get(self.base + "/readyz")
        self.assertEqual((code, json.loads(body)), (200, {"ready": True, "problems": []}))
        self.assertEqual(headers["content-type"], "application/json")
        self.assertTrue(body.endswith(b"}\n"), body)
        self.core.problem = "Redis unreachable at 127.0.0.1:6379\n(retrying in 2 s)"
        code, _, body = yield get(self.base + "/readyz")
        self.assertEqual((code, json.loads(body)), (503, {
            "ready": False, "problems": ["Redis unreachable at 127.0.0.1:6379 (retrying in 2 s)"]}))
        self.core.problem = None
        code, _, body = yield get(self.base + "/readyz")
        self.assertEqual((code, json.loads(body)), (200, {"ready": True, "problems": []}))

    @defer.inlineCallbacks
    def test_ready_with_problems_lists_them_and_a_503_gives_its_reason_first(self):
        """A missing directory does not make the daemon unready, but /readyz
        and /livez name it; the reason of a 503 comes first, once."""
        self.core.others = ["[stage1] /data/in is missing"]
        for path, verdict in (("/readyz", "ready"), ("/livez", "alive")):
            code, _, body = yield get(self.base + path)
            self.assertEqual((code, json.loads(body)),
                             (200, {verdict: True, "problems": ["[stage1] /data/in is missing"]}))
        self.core.problem = "Redis at 127.0.0.1:6379: connecting"
        self.core.others.append("Redis at 127.0.0.1:6379: connecting")  # said by both: once
        code, _, body = yield get(self.base + "/readyz")
        self.assertEqual(code, 503)
        self.assertEqual(json.loads(body)["problems"],
                         ["Redis at 127.0.0.1:6379: connecting", "[stage1] /data/in is missing"])

    @defer.inlineCallbacks
    def test_livez_follows_the_core(self):
        code, _, body = yield get(self.base + "/livez")
        self.assertEqual((code, json.loads(body)), (200, {"alive": True, "problems": []}))
        self.core.is_alive = False
        code, _, body = yield get(self.base + "/livez")
        self.assertEqual(code, 503)
        self.assertEqual(body.count(b"\n"), 1)
        self.assertEqual(json.loads(body), {"alive": False, "problems": ["not alive: stuck"]})

    @defer.inlineCallbacks
    def test_other_paths_are_404(self):
        for path in ("/", "/metric", "/metrics/x", "/readyz/", "/favicon.ico"):
            code, _, body = yield get(self.base + path)
            self.assertEqual((path, code, body), (path, 404, b"not found\n"))

    @defer.inlineCallbacks
    def test_head_and_other_methods(self):
        code, _, body = yield get(self.base + "/livez", method=b"HEAD")
        self.assertEqual((code, body), (200, b""))
        code, _, _ = yield get(self.base + "/metrics", method=b"POST")
        self.assertEqual(code, 405)

    @defer.inlineCallbacks
    def test_requests_are_not_logged(self):
        events = Events(self)
        for path in ("/metrics", "/livez", "/readyz", "/nope"):
            yield get(self.base + path)
        self.assertEqual([formatEvent(e) for e in events.events if '"GET /' in formatEvent(e)], [])

    @defer.inlineCallbacks
    def test_a_failing_collection_is_a_500_and_one_logged_failure(self):
        self.core.writer = None  # a bug in the core: every scrape fails
        for _ in range(3):
            code, _, body = yield get(self.base + "/metrics")
            self.assertEqual(code, 500)
            self.assertTrue(body.startswith(b"collecting metrics failed: "), body)
            self.assertEqual(body.count(b"\n"), 1)
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)

    @defer.inlineCallbacks
    def test_stop_closes_the_port(self):
        url = self.base + "/livez"
        yield self.service.stopService()
        self.assertIsNone(self.service.port)
        yield self.assertFailure(get(url), ConnectionRefusedError)


class ListenProblemTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_port_in_use_refuses_the_start_in_one_line(self):
        """The start fails with StartRefused (one line, the status given), nothing logged by the service."""
        first = MetricsService("tcp:0:interface=127.0.0.1", Core(), reactor)
        first.startService()
        self.addCleanup(first.stopService)
        port = first.port.getHost().port
        events = Events(self)
        second = MetricsService(f"tcp:{port}:interface=127.0.0.1", Core(), reactor, refused_status=71)
        refused = yield self.assertFailure(second.startService(), StartRefused)
        self.assertIsNone((yield second.listening))
        self.assertIsNone(second.port)
        self.assertIn(f"cannot serve /metrics on tcp:{port}:interface=127.0.0.1: ", second.problem)
        self.assertIn("in use", second.problem)
        self.assertEqual((refused.message, refused.status), (f"{second.problem}; stopping", 71))
        self.assertNotIn("\n", refused.message)
        # The tree logs the refusal (test_services); the service says nothing twice.
        self.assertEqual(events.of("dirobserver.ops.http"), [])
        self.assertIsNone((yield second.stopService()))

    @defer.inlineCallbacks
    def test_bad_description_at_start_is_a_refusal_not_a_traceback(self):
        service = MetricsService("tcp:notaport", Core(), reactor)
        yield self.assertFailure(service.startService(), StartRefused)
        self.assertIsNone((yield service.listening))
        self.assertIn("cannot serve /metrics on tcp:notaport", service.problem)
        service.stopService()

    @defer.inlineCallbacks
    def test_one_line_of_ours_says_where(self):
        events = Events(self)
        service = MetricsService("tcp:0:interface=127.0.0.1", Core(), reactor)
        yield service.startService()
        port = service.port.getHost().port
        ours = [formatEvent(e) for e in events.of("dirobserver.ops.http")]
        self.assertEqual(ours, [f"Metrics and health endpoints (/metrics, /livez, /readyz) on 127.0.0.1:{port}"])
        yield service.stopService()


class CheckEndpointTests(unittest.TestCase):
    def test_good_descriptions(self):
        for description in (DEFAULT_ENDPOINT, "tcp:0", "tcp:9108", "unix:/run/dirobserver/metrics.sock",
                            "tcp6:9108:interface=\\:\\:1"):
            self.assertIsNone(check_endpoint(description), description)

    def test_bad_descriptions_are_one_line(self):
        cases = {
            "tcp:notaport": "'tcp:notaport' is not a server endpoint (",
            "carrier-pigeon:1": "'carrier-pigeon:1' is not a server endpoint (",
            "": "'' is not a server endpoint (",
            "tcp:9108:colour=blue": "'tcp:9108:colour=blue' is not a server endpoint (",
            "tcp:70000": "'tcp:70000': port 70000 is out of range (0-65535)",
        }
        for description, start in cases.items():
            problem = check_endpoint(description)
            self.assertIsNotNone(problem, description)
            self.assertTrue(problem.startswith(start), problem)
            self.assertNotIn("\n", problem)

    def test_checking_listens_on_nothing(self):
        """The description of a port in use passes: checking opens nothing."""
        service = MetricsService("tcp:0:interface=127.0.0.1", Core(), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIsNone(check_endpoint(f"tcp:{service.port.getHost().port}:interface=127.0.0.1"))
