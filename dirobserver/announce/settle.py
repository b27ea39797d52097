"""
Files waiting to be complete: one section's table, bounded, timed by buckets.

A file that its section may not announce yet waits here in one of two ways:

 - I{open}: created by an C{open(2)} in the directory and not closed yet
   (C{announce = closed}).  No timer: it waits for its close (L{closed}).
 - I{due}: it waits for a time.  That is C{settle} seconds after its last
   modification (L{quiet}, L{touched}), or, for a regular file whose name
   appeared with no open seen (L{unsure}), a short L{GRACE} for an open that
   a read of the kernel queue split from the creation.

"Quiet for C{settle}" is L{dirobserver.util.quiet}'s rule, the one the
poller and the listings wait by too.

Times are rounded up to a L{TICK}, and the files due in the same tick share
one bucket and one C{callLater}: a burst of a million files costs a few
hundred timers rather than a million, and no file is announced before its
time.  A modification moves the file to a later bucket (an emptied bucket
cancels its call), so a file written for an hour holds one place, not one
per write.

The table is bounded.  When a file comes and C{limit} files wait already,
it forgets those and calls C{on_full}: the section then lists its directory,
and the listing announces them once they are old enough (see
L{dirobserver.announce.listing}).  The file that came waits as it should.
A listing may fill half of the table with the young files it finds
(L{hold}); it looks at the others again later.

Before it announces the files of a bucket, the table asks for the events
already queued (C{catch_up}): a process stopped for a while (SIGSTOP, a
stalled VM) runs its late timers before it reads the events of that
while, and a file written meanwhile would be announced as quiet (found by
the soak).

Names are the kernel's bytes; each entry keeps the decoded text its event
needs.  No I/O here, and time comes from the clock given: tests drive it
with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from dirobserver.announce.event import CREATED, EXISTS
from dirobserver.util.quiet import quiet_at

#: Buckets per second: a file is announced at most one tick after its time.
TICKS_PER_SECOND = 100
TICK = 1.0 / TICKS_PER_SECOND

#: Seconds a regular file whose name appeared with no open seen waits for one:
#: creation and open are one system call, but a read of the kernel queue (or
#: a preempted writer) can separate their two events.
GRACE = 0.1

#: Files one section may keep waiting.  About 260 bytes each with names of 30
#: characters: 26 MB at most.
MAX_WAITING = 100_000

#: What a table announces: C{(text, event)} pairs, and when they became due.
Announce = Callable[[list[tuple[str, str]], float], None]


class _Due:
    """A file waiting for a time (see the module docstring)."""

    __slots__ = ("text", "event", "unsure", "bucket")

    def __init__(self, text: str, event: str, unsure: bool = False) -> None:
        self.text = text
        self.event = event
        #: no open seen yet: an open still to come makes it wait for a close
        self.unsure = unsure
        self.bucket: int | None = None


class SettleTable:
    """
    The files of one section that wait to be complete.

    @ivar settle: seconds a file must stay unmodified (C{0}: none).
    @ivar limit: the most files kept; see the module docstring.
    @ivar overflows: how many times the table was full and forgot its files.
    """

    _log = Logger()

    def __init__(
        self,
        settle: float,
        clock: IReactorTime,
        announce: Announce,
        on_full: Callable[[int], None],
        limit: int = MAX_WAITING,
        catch_up: Callable[[], None] | None = None,
    ) -> None:
        """
        @param announce: called with the files due, and the time.
        @param on_full: called with the number of files forgotten when the
            table was full.
        @param catch_up: delivers the events already queued (see the module
            docstring); it may move or forget any file, or all of them.
        """
        self.settle = settle
        self.limit = limit
        self.overflows = 0
        self._clock = clock
        self._announce = announce
        self._on_full = on_full
        self._catch_up = catch_up
        self._open: dict[bytes, str] = {}
        self._due: dict[bytes, _Due] = {}
        #: bucket -> the names due then (a dict: an ordered set)
        self._buckets: dict[int, dict[bytes, None]] = {}
        self._calls: dict[int, IDelayedCall] = {}

    def __len__(self) -> int:
        return len(self._open) + len(self._due)

    def __contains__(self, name: bytes) -> bool:
        return name in self._open or name in self._due

    def timers(self) -> int:
        """How many calls are scheduled (one per bucket with files)."""
        return len(self._calls)

    # -- files that start waiting ---------------------------------------------------

    def open(self, name: bytes, text: str) -> None:
        """C{name} was created by an open: it waits for its close."""
        entry = self._due.pop(name, None)
        if entry is not None:
            self._leave(name, entry)
        elif name not in self._open:
            self._room()
        self._open[name] = text

    def quiet(self, name: bytes, text: str, now: float, event: str = CREATED) -> None:
        """C{name} is complete: announce it once unmodified for C{settle}."""
        self._wait(name, text, event, quiet_at(now, self.settle), False)

    def unsure(self, name: bytes, text: str, now: float) -> None:
        """C{name} appeared with no open seen: wait a L{GRACE} for one."""
        self._wait(name, text, CREATED, quiet_at(now, max(self.settle, GRACE)), True)

    def hold(self, name: bytes, text: str, due: float) -> bool:
        """
        A listing found C{name} too young: announce it (as C{"exists"}) at
        C{due}, unless it is modified before.

        @return: False when the listing's half of the table is used up.
        """
        if name in self._open or name in self._due:
            return True
        if len(self) >= self.limit // 2:
            return False
        entry = self._due[name] = _Due(text, EXISTS)
        self._place(name, entry, due)
        return True

    # -- what happens to them ---------------------------------------------------------

    def opened(self, name: bytes) -> None:
        """An open of C{name}: a file that was unsure now waits for its close."""
        entry = self._due.get(name)
        if entry is not None and entry.unsure:
            del self._due[name]
            self._leave(name, entry)
            self._open[name] = entry.text

    def closed(self, name: bytes, now: float) -> str | None:
        """
        A writer closed C{name}.

        @return: its text when it is complete now (C{settle} is 0); else
            None (it waits for C{settle}, or it is not waiting here).
        """
        text = self._open.pop(name, None)
        if text is None:
            self.touched(name, now)
            return None
        if not self.settle:
            return text
        self._wait(name, text, CREATED, quiet_at(now, self.settle), False)
        return None

    def touched(self, name: bytes, now: float) -> None:
        """C{name} was modified: its wait starts again (an open file waits on)."""
        entry = self._due.get(name)
        if entry is not None:
            self._place(name, entry, quiet_at(now, max(self.settle, GRACE) if entry.unsure else self.settle))

    def forget(self, name: bytes) -> None:
        """C{name} was deleted or moved away: it is never announced."""
        if self._open.pop(name, None) is None:
            entry = self._due.pop(name, None)
            if entry is not None:
                self._leave(name, entry)

    def forget_all(self) -> None:
        """Forget every file and cancel every call (the watch ended or lost events)."""
        for call in self._calls.values():
            call.cancel()
        self._calls.clear()
        self._buckets.clear()
        self._open.clear()
        self._due.clear()

    # -- the buckets ---------------------------------------------------------------------

    def _room(self) -> None:
        """Make room for one more file: when full, forget them all (see L{on_full})."""
        if len(self) < self.limit:
            return
        count = len(self)
        self.forget_all()
        self.overflows += 1
        self._on_full(count)

    def _wait(self, name: bytes, text: str, event: str, due: float, unsure: bool) -> None:
        entry = self._due.get(name)
        if entry is None:
            if self._open.pop(name, None) is None:
                self._room()
            entry = self._due[name] = _Due(text, event, unsure)
        else:
            entry.text, entry.event, entry.unsure = text, event, unsure
        self._place(name, entry, due)

    def _place(self, name: bytes, entry: _Due, due: float) -> None:
        bucket = math.ceil(due * TICKS_PER_SECOND)
        if bucket == entry.bucket:
            return  # several writes within one tick: nothing moves
        if entry.bucket is not None:
            self._leave(name, entry)
        entry.bucket = bucket
        names = self._buckets.get(bucket)
        if names is None:
            names = self._buckets[bucket] = {}
            delay = max(0.0, bucket / TICKS_PER_SECOND - self._clock.seconds())
            self._calls[bucket] = self._clock.callLater(delay, self._fire, bucket)
        names[name] = None

    def _leave(self, name: bytes, entry: _Due) -> None:
        """Take C{name} out of its bucket (an emptied bucket cancels its call)."""
        bucket, entry.bucket = entry.bucket, None
        if bucket is None:
            return
        names = self._buckets[bucket]
        del names[name]
        if not names:
            del self._buckets[bucket]
            call = self._calls.pop(bucket, None)
            if call is not None:  # None: the bucket is firing (see _fire)
                call.cancel()

    def _fire(self, bucket: int) -> None:
        del self._calls[bucket]
        if self._catch_up is not None:
            try:
                self._catch_up()
            except Exception:
                self._log.failure("Reading the events queued before announcing failed")
        names = self._buckets.pop(bucket, None)
        if names is None:
            return  # every file of the bucket moved, or was forgotten
        due = self._due
        items = []
        for name in names:
            entry = due.pop(name)
            items.append((entry.text, entry.event))
        try:
            self._announce(items, self._clock.seconds())
        except Exception:
            self._log.failure("Announcing {n} complete files failed", n=len(items))
