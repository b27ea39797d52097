"""
Where events come from: the interface between event sources and monitors.

An event source reports what happens in directories; a sink (a section's
L{dirobserver.announce.monitor.DirectoryMonitor}, the watchdog) receives the events
of the directories it asked for.  The sources are the inotify
L{dirobserver.sources.inotify.InotifySource}, the polling scanner
(L{dirobserver.sources.polling}) and the watches of a tree; each refuses a
directory it cannot watch with L{WatchError}.

Events are C{(name, mask)} pairs in the order they happened: C{name} is the
entry's name as bytes (decoded by the sink, see L{dirobserver.announce.event}), and
C{mask} uses inotify's bits (C{IN_CREATE}, C{IN_MOVED_TO}, C{IN_ISDIR}...,
see L{dirobserver.sources.masks}), which every source produces.  Each batch
carries the time it was read, so the sink stamps its events without asking
the source.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

#: A batch of events of one directory: C{(name, mask)} pairs, in order.
Batch = list[tuple[bytes, int]]


class EventSink(Protocol):
    """What receives the events of one directory."""

    def file_events(self, batch: Batch, read_time: float) -> None:
        """
        Entries appeared (or changed, for the masks the sink asked for).

        @param batch: C{(name, mask)} pairs, in order.
        @param read_time: when the source read them (the reactor's clock,
            seconds since the epoch); the same for the whole batch.
        """

    def watch_ended(self, mask: int) -> None:
        """The directory was deleted, moved or unmounted: no more events."""

    def events_lost(self) -> None:
        """
        Some events were lost (the kernel queue overflowed): what the sink
        remembers of earlier events (a file opened, say, whose close was
        lost) may no longer hold.  A listing of the directory follows.
        """


class EventSource(Protocol):
    """What a sink asks for the events of a directory."""

    def add(self, path: bytes, sink: EventSink, mask: int) -> int:
        """
        Deliver the events of directory C{path} selected by C{mask} to C{sink}.

        Several sinks may ask for the same directory with different masks:
        each gets the events of its own mask.

        @return: a handle to give back to L{remove}.
        @raise WatchError: the directory cannot be watched (C{errno} says why).
        """

    def remove(self, handle: int, sink: EventSink) -> None:
        """Stop delivering the events of C{handle} to C{sink}."""

    def drain(self) -> None:
        """
        Deliver now the events already waiting to be read (a sink about to
        act on a timer asks first: after the process was stopped for a
        while, timers run before the events of that while are read).
        """

    def backlog(self) -> int:
        """
        Bytes of events read from the kernel and not handed over yet (0 for
        a source with no queue): a source catching up with a burst.
        """


class WatchError(OSError):
    """
    A directory could not be watched.  C{errno} says why (C{ENOENT},
    C{ENOTDIR}, C{EACCES}, C{ENOSPC} for the C{max_user_watches} limit).
    """

    @property
    def reason(self) -> str:
        """Why, in a few words that follow the path in a log line."""
        if self.errno == errno.ENOENT:
            return "does not exist"
        if self.errno == errno.ENOTDIR:
            return "is not a directory"
        if self.errno == errno.EACCES:
            return "cannot be read: permission denied"
        if self.errno == errno.ENOSPC:
            return (
                "is beyond the inotify watch limit, which is reached "
                "(raise fs.inotify.max_user_watches)"
            )
        return f"cannot be watched ({self.strerror})"

    def __str__(self) -> str:
        return f"cannot watch {os.fsdecode(self.filename)}: it {self.reason}"
