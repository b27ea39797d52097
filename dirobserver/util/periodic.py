"""
Periodic work that survives its own failures.

A L{LoopingCall} stops for good when its function raises (or its Deferred
fails).  The forced poll, the retry of missing directories and the watchdog
must never stop that way: L{Periodic} logs the failure and runs again at the
next interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure


class Periodic:
    """
    Run C{work} every C{interval} seconds; a failure is logged, not fatal.

    @ivar calls: how many times C{work} ran.
    """

    _log = Logger()

    def __init__(
        self, work: Callable[[], Any], interval: float, what: str, clock: IReactorTime
    ) -> None:
        self._work = work
        self._what = what
        self.interval = interval
        self.calls = 0
        self._loop = task.LoopingCall(self._run)
        self._loop.clock = clock

    def _run(self) -> defer.Deferred:
        self.calls += 1
        d = defer.maybeDeferred(self._work)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Failure) -> None:
        self._log.failure("{what} failed; trying again in {interval} s", failure,
                          what=self._what, interval=self.interval)

    def start(self, now: bool = False) -> None:
        """Start running; C{now}: run once right away too."""
        self._loop.start(self.interval, now=now)

    def stop(self) -> None:
        """Stop running (a run in progress completes)."""
        if self._loop.running:
            self._loop.stop()

    @property
    def running(self) -> bool:
        return self._loop.running
