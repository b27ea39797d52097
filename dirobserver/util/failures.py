"""
A failure in a few words, for one log line; and L{StartRefused}, the
failure of a part that cannot start for a reason the operator must fix.

L{describe_failure} is used wherever something that was asked for did not
come: a Redis connection attempt (L{dirobserver.redis.attempt}), a
directory listing (L{dirobserver.announce.listing}).
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


class StartRefused(Exception):
    """
    A part of the service tree cannot start, for a reason that is the
    operator's to fix: the parts after it are not started and the daemon
    stops with L{status} (see L{dirobserver.app.ordered_services}; the
    statuses are in L{dirobserver.app.exits}).

    @ivar message: why, in one line (logged as such, without a traceback).
    @ivar status: the exit status.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
