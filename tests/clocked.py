"""
A real directory, and time driven by a Clock: for the parts that scan and
walk directories cooperatively (L{dirobserver.sources.polling}, L{dirobserver.sources.tree}).
"""

from __future__ import annotations

import shutil
import tempfile

from twisted.internet import task
from twisted.trial import unittest


class ClockedDirectoryCase(unittest.TestCase):
    """
    C{self.root}, a fresh directory; C{self.clock}; and C{self.cooperator},
    whose steps are calls of that clock.
    """

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="dirobserver-clocked-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.clock = task.Clock()
        self.cooperator = task.Cooperator(scheduler=lambda step: self.clock.callLater(0, step))

    def run_due(self, seconds: float = 0.0) -> None:
        """Let C{seconds} pass, then run every call due until none is (the cooperative work to its end)."""
        self.clock.advance(seconds)
        for _ in range(10_000):
            if not any(call.getTime() <= self.clock.seconds() for call in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)
        raise AssertionError("the cooperative work never ended")
