"""
A failure in a few words, for one log line.

Used wherever something that was asked for did not come: a Redis
connection attempt (L{dirobserver.redis.attempt}), a directory listing
(L{dirobserver.announce.listing}).
"""

from __future__ import annotations

from twisted.internet import defer, error
from twisted.python.failure import Failure


def describe_failure(failure: Failure) -> str:
    """A short text for a failure, for one log line."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "no answer in time"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    return failure.getErrorMessage() or failure.type.__name__
