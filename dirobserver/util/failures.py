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
    message = failure.getErrorMessage()
    if message:
        return message
    # A Failure made from an exception always has its type; the attribute
    # is None only in an empty one (unpickled, say).
    return failure.type.__name__ if failure.type is not None else "unknown error"
