"""The observer's own log events, collected in-process while a trial test runs."""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest


class LogCapture:
    """The observer's own log lines (text and level), collected while a test runs."""

    def __init__(self, case: unittest.TestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self._observe)
        case.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict) -> None:
        if event.get("log_namespace", "").startswith("dirobserver."):
            self.events.append(event)

    def lines(self, level: str | None = None) -> list[str]:
        """Formatted lines, optionally only those of one level (C{"warn"}, C{"info"})."""
        return [formatEvent(e) for e in self.events
                if level is None or e["log_level"].name == level]
