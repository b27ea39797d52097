"""
Where the events that a kernel queue overflow made unreliable end.

The kernel (fsnotify, for inotify and fanotify alike) has one overflow event
per queue: it queues it when the queue is full and drops what follows, and
it never queues it a second time while it is unread.  Once the reader frees
room, new events are queued *behind* the unread overflow event, and when the
queue fills again their successors are dropped with no new overflow event:
a file's creation and open come after the overflow event, its close is lost.
A reader that forgot its open files at the overflow event would then wait
for that close for ever, and the listing that follows would skip the file as
one still being written (found with the benchmark's C{burst-closed} under
load: one file in about fifty runs with two overflows).

So every event still queued when the overflow event is read is no better
than the overflow event itself; only those queued after that read are.  The
sources handle the loss (forget what they were waiting for, ask for a
listing) once they have read those bytes too, not at the overflow event:
L{OverflowSpan} counts them, from what the queue held (C{FIONREAD}) right
after the read that held the overflow event.  Counting a few later events in
with them costs nothing but their own forgetting, which the listing covers.
"""

from __future__ import annotations

import array
import fcntl
import termios


def queued_bytes(descriptor: int) -> int:
    """How many bytes of events the kernel holds for C{descriptor} (FIONREAD; 0 if it cannot tell)."""
    box = array.array("i", [0])
    try:
        fcntl.ioctl(descriptor, termios.FIONREAD, box, True)
    except OSError:
        return 0
    return box[0]


class OverflowSpan:
    """
    The reads a source makes after an overflow event, until the loss it
    reported can be handled (see the module docstring).

    Per read: L{read} before parsing it, L{marked} at an overflow event in
    it, L{due} once its events are handed over.
    """

    __slots__ = ("_left",)

    def __init__(self) -> None:
        #: bytes still to read before the loss is handled; None: no loss
        self._left: int | None = None

    @property
    def open(self) -> bool:
        """Whether a loss waits to be handled."""
        return self._left is not None

    def read(self, size: int) -> None:
        """A read of C{size} bytes is about to be handed over."""
        if self._left is not None:
            self._left -= size

    def marked(self, queued: int) -> None:
        """
        An overflow event in the read in hand; the kernel held C{queued}
        more bytes after that read.  A second one within the span moves its
        end further.
        """
        self._left = queued

    def due(self) -> bool:
        """True, once, when the read just handed over ends the span."""
        if self._left is not None and self._left <= 0:
            self._left = None
            return True
        return False
