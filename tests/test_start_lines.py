"""
The lines an operator reads first, from the real core (L{core_case}): no
"waiting for Redis" when Redis answers at once, "1 directory" in the
singular, and "back" only for a directory that was watched before.
"""

from __future__ import annotations

import shutil

import pytest
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher

from dirobserver.app.core import WAITING_SAID_AFTER
from tests.kit.cases import CoreTestCase
from tests.kit.waiting import sleep

pytestmark = pytest.mark.process


class StartLinesTests(CoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, text: str) -> list[str]:
        return [formatEvent(e) for e in self.events
                if e.get("log_namespace", "").startswith("dirobserver") and text in formatEvent(e)]

    @defer.inlineCallbacks
    def wait_for_line(self, text: str, seconds: float = 10.0):
        for _ in range(int(seconds / 0.01)):
            if self.lines(text):
                return self.lines(text)
            yield sleep(0.01)
        self.fail(f"no line with {text!r}: {[formatEvent(e) for e in self.events]}")

    @defer.inlineCallbacks
    def test_redis_at_once_is_one_ready_line_and_no_waiting(self):
        core = self.make_core("")
        self.start()
        [ready] = yield self.wait_for_line("dirobserver ready")
        self.assertIn("watching 1 of 1 directory, Redis at", ready)
        # The "waiting" line is no longer due: nothing will say it.
        due = [c for c in reactor.getDelayedCalls() if c.func == core._say_waiting]
        self.assertEqual(due, [])
        self.assertEqual(self.lines("waiting for Redis"), [])

    @defer.inlineCallbacks
    def test_redis_down_says_waiting_after_a_while(self):
        self.server.stop()
        self.make_core("")
        self.start()
        [waiting] = yield self.wait_for_line("waiting for Redis", WAITING_SAID_AFTER + 10)
        self.assertTrue(waiting.startswith("Watching 1 of 1 directory; waiting for Redis at 127.0.0.1:"),
                        waiting)
        self.assertEqual(self.lines("dirobserver ready"), [])

    @defer.inlineCallbacks
    def test_back_only_for_a_directory_watched_before(self):
        """Missing at start then created: "Now watching"; deleted and created
        again: "Directory is back"."""
        shutil.rmtree(self.dir)
        self.make_core("")
        self.start()
        yield self.wait_for_line("does not exist")
        self.dir.mkdir()
        [first] = yield self.wait_for_line("Now watching")
        self.assertIn(f"[s] Now watching {self.dir} -> queue q", first)
        self.assertEqual(self.lines("is back"), [])
        shutil.rmtree(self.dir)
        yield self.wait_for_line("was deleted")
        self.dir.mkdir()
        [back] = yield self.wait_for_line("is back")
        self.assertIn(f"[s] Directory is back, watching {self.dir} -> queue q", back)
