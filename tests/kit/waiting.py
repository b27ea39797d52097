"""
Waiting for a condition, never for a fixed time: in a plain thread
(L{wait_until}) and on the real reactor (L{sleep}, L{wait_for}) for the
trial tests that run the observer's parts in-process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import defer, task


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.02
) -> bool:
    """
    Call C{predicate} until it returns something true or C{timeout} passes.

    @return: whether the predicate became true (checked once more at the
        deadline, so a slow last step is not lost).
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def sleep(seconds: float) -> defer.Deferred:
    """A Deferred that fires after C{seconds} of the real reactor."""
    # Imported here: importing the kit must not install the global reactor
    # (the benchmark's own process never runs one).
    from twisted.internet import reactor

    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02
) -> Generator[defer.Deferred, Any, bool]:
    """
    On the real reactor: whether C{predicate()} became true within
    C{timeout} seconds (checked once more at the deadline).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        yield sleep(interval)
    return bool(predicate())
