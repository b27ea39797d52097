"""
A service tree whose children start in order and stop in reverse.

Twisted's L{MultiService} starts its children one after the other without
waiting for anything, and stops them all at once, swallowing their errors.
The observer's parts depend on each other: the writer must hold what the
core still reads from the kernel when it stops, the embedded Redis must
outlive the writer's last delivery.  L{OrderedMultiService} (the idea of
buildbot's C{AsyncMultiService}) waits for each child: a child's
C{startService} or C{stopService} may return a Deferred, and the next child
moves only once it has fired.  A child that fails to start or stop is
logged, and the others still start or stop; the Deferred returned to the
caller fails with the first failure, so it is never lost.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure


class OrderedMultiService(service.MultiService):
    """
    A L{MultiService} that starts children in order and stops them in
    reverse order, each waiting for the previous one.

    @ivar started: fires once every child has been started (with the first
        start failure, if any).
    """

    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self.started: defer.Deferred | None = None

    def startService(self) -> defer.Deferred:
        service.Service.startService(self)
        self.started = self._in_turn(list(self), "startService", "Starting")
        return self.started

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        return self._in_turn(list(reversed(list(self))), "stopService", "Stopping")

    @defer.inlineCallbacks
    def _in_turn(self, children: list[service.IService], method: str, doing: str) -> Any:
        first: Failure | None = None
        for child in children:
            try:
                yield defer.maybeDeferred(getattr(child, method))
            except Exception:
                failure = Failure()
                self._log.failure("{doing} {name} failed", failure, doing=doing,
                                  name=getattr(child, "name", None) or type(child).__name__)
                first = first or failure
        if first is not None:
            first.raiseException()
