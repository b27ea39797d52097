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

A child that refuses to start (L{StartRefused}: something the operator must
fix, such as a port held by another program) is different: its reason is
one line, without a traceback, and the children after it are not started,
so that nothing is watched nor sent to Redis by a daemon that is about to
stop.  The Deferred fails with that L{StartRefused}.  Stopping stops only
the children that started.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.util.failures import StartRefused


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
        #: the children left unstarted after one refused (L{StartRefused})
        self._not_started: list[service.IService] = []

    def startService(self) -> defer.Deferred:
        service.Service.startService(self)
        self._not_started = []
        self.started = self._in_turn(list(self), "startService", "Starting")
        return self.started

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        started = [child for child in self if child not in self._not_started]
        return self._in_turn(list(reversed(started)), "stopService", "Stopping")

    @defer.inlineCallbacks
    def _in_turn(self, children: list[service.IService], method: str, doing: str) -> Any:
        first: Failure | None = None
        for i, child in enumerate(children):
            try:
                yield defer.maybeDeferred(getattr(child, method))
            except StartRefused as refused:
                self._log.error("{refusal}", refusal=refused.message)
                first = first or Failure()
                self._not_started = children[i + 1:]
                break
            except Exception:
                failure = Failure()
                self._log.failure("{doing} {name} failed", failure, doing=doing,
                                  name=getattr(child, "name", None) or type(child).__name__)
                first = first or failure
        if first is not None:
            first.raiseException()
