"""
The inotify layer: one inotify descriptor in the reactor for every monitored
directory.

L{InotifySource} is a L{FileDescriptor} of its own: it opens the descriptor
through its C{calls}, hands it to the reactor (C{startReading}), and parses
C{struct inotify_event} itself.  It does not build on Twisted's
L{twisted.internet.inotify.INotify}, whose behaviour is unfit for a daemon
that must not lose events:

 1. On C{IN_DELETE_SELF}, Twisted's C{INotify} calls C{loseConnection()}: the
    deletion of one watched directory silently ends every other watch of the
    instance.  Opening one instance per directory is no way out, since
    C{fs.inotify.max_user_instances} is 128.  Here the end of one watch
    (deleted, moved, unmounted) only ends that watch.
 2. C{IN_Q_OVERFLOW} (watch descriptor -1: the kernel queue was full and
    events were dropped) is discarded by Twisted.  Here it is counted; the
    events still queued when it was read are handed over too (they may have
    lost their successors: L{dirobserver.sources.overflow_span}), then
    every sink is told that events were lost (C{events_lost}: what it
    remembers of earlier events may be stale), then C{on_overflow} is
    called, so the caller can list every directory.
 3. Twisted reads 8 KiB per reactor turn and rebuilds its byte buffer for
    every event, and builds a C{FilePath} per event.  Here the queue is
    emptied into memory every turn and one read's worth handed over
    (L{dirobserver.sources.read_ahead}), so that the handing over does not
    let the kernel queue overflow; events are parsed in place with
    C{struct.unpack_from}, and the name is handed over as bytes: the mask
    already says whether the entry is a directory, so nothing needs a path
    object or a C{stat}.

A stream of events naps between reads, so that its events gather in the
kernel queue (L{dirobserver.sources.read_pacing}).

A sink (see L{dirobserver.sources.interface.EventSink}) receives the events of one
directory.  Several sinks may share one watch (two sections of the
configuration watching the same directory get the same watch descriptor from
the kernel), each with a mask of its own: the kernel watch asks for the union,
and each sink is handed only the events of its mask.

The system calls go through L{dirobserver.sources.inotify_calls.LibcInotify};
a test passes another object (one that fails with C{ENOSPC}, say) as
C{calls}.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.sources.inotify_calls import LIBC_INOTIFY, LibcInotify
from dirobserver.sources.interface import Batch, EventSink, WatchError
from dirobserver.sources.masks import (
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MOVE_SELF,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    WATCH_MASK,
)
from dirobserver.sources.overflow_span import OverflowSpan
from dirobserver.sources.read_ahead import ReadAhead
from dirobserver.sources.read_pacing import ReadPacing
from dirobserver.util.linger import Linger
from dirobserver.util.reactor import IDaemonReactor

#: Bits of a mask that are flags of the watch, not kinds of events.
_FLAGS = IN_ONLYDIR

#: Masks that end a watch: after them the watch no longer reports the
#: configured path.
_ENDS_WATCH = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED

_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len (struct inotify_event)


class InotifySource(FileDescriptor):
    """
    One inotify instance in the reactor, serving any number of directories.

    The descriptor is opened when the source is made, read once
    C{startReading()} puts it in the reactor, and closed by L{close} (or when
    a read fails).

    @ivar overflows: how many times the kernel queue overflowed.
    @ivar events: how many events were read.
    @ivar connected: true until the descriptor is closed.

    The reactor is the daemon's: the descriptor is read in it (an
    L{IReactorFDSet}), and each read is stamped with its C{seconds()}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IDaemonReactor,
        on_overflow: Callable[[], None] | None = None,
        calls: LibcInotify = LIBC_INOTIFY,
        linger: Linger | None = None,
    ) -> None:
        """
        @param linger: when given (and enabled), a read that found events is
            followed by a nap until its next tick: what comes meanwhile
            gathers in the kernel queue and is read, and sent, at once.
        """
        super().__init__(reactor=reactor)
        # FileDescriptor knows its reactor as an IReactorFDSet only: the
        # same reactor, as the clock every read is stamped with.
        self._clock: IReactorTime = reactor
        self._calls = calls
        self._descriptor = calls.init()
        # LibcInotify asks for both already; other calls (a test's) may not.
        os.set_blocking(self._descriptor, False)
        os.set_inheritable(self._descriptor, False)
        # Open from now on, read or not: close() must close the descriptor
        # even if it never entered the reactor.
        self.connected = 1
        #: per watch descriptor: the sinks and the mask each asked for
        self._sinks: dict[int, list[tuple[EventSink, int]]] = {}
        #: per watch descriptor: the paths it was set on (several when a
        #: link leads to the same directory), and the mask the kernel was
        #: asked for (the union of its sinks' masks)
        self._paths: dict[int, list[bytes]] = {}
        self._wd_of: dict[bytes, int] = {}
        self._union: dict[int, int] = {}
        #: watch descriptors with a sink that asked for less than the union
        self._mixed: set[int] = set()
        self._on_overflow = on_overflow
        self._pacing = ReadPacing(self._clock, linger, self.stopReading, self._read_again)
        self._reader = ReadAhead(self._clock, self._descriptor, "inotify", self._hand_over,
                                 self.connectionLost, self._pacing)
        self.overflows = 0
        self._span = OverflowSpan()
        self.events = 0

    def fileno(self) -> int:
        """The inotify descriptor (-1 once closed), for the reactor."""
        return self._descriptor

    def add(self, path: bytes, sink: EventSink, mask: int = WATCH_MASK) -> int:
        """
        Start delivering the events of directory C{path} selected by C{mask}
        to C{sink} (see L{dirobserver.sources.interface.EventSource.add}).

        @return: the watch descriptor, to give back to L{remove}.
        @raise WatchError: when the kernel refuses the watch.
        """
        # inotify_add_watch on a watched inode replaces its mask: ask for
        # what the sinks already there need too, so none misses an event.
        known = self._wd_of.get(path)
        wanted = mask | (self._union.get(known, 0) if known is not None else 0)
        wd = self._calls.add_watch(self._descriptor, path, wanted)
        self._sinks.setdefault(wd, []).append((sink, mask))
        paths = self._paths.setdefault(wd, [])
        if path not in paths:
            paths.append(path)
        self._wd_of[path] = wd
        self._union[wd] = wanted  # what the kernel reports now
        # The same directory reached under another name (a symbolic link)
        # has sinks this path did not know of: ask for their events again.
        self._narrow(wd)
        return wd

    def remove(self, wd: int, sink: EventSink) -> None:
        """Stop delivering events of watch C{wd} to C{sink}."""
        sinks = self._sinks.get(wd)
        if sinks is None:
            return
        kept = [(s, m) for s, m in sinks if s is not sink]
        if len(kept) == len(sinks):
            return
        if kept:
            self._sinks[wd] = kept
            self._narrow(wd)
        else:
            self._forget(wd)
            self._calls.rm_watch(self._descriptor, wd)

    def _narrow(self, wd: int) -> None:
        """Ask the kernel for exactly the union of the masks of C{wd}'s sinks."""
        union = 0
        for _sink, mask in self._sinks[wd]:
            union |= mask
        if union != self._union.get(wd):
            self._union[wd] = union
            try:
                self._calls.add_watch(self._descriptor, self._paths[wd][-1], union)
            except WatchError:
                pass  # the directory went away: its end-of-watch event follows
        self._note_mixed(wd)

    def _note_mixed(self, wd: int) -> None:
        union = self._union[wd]
        if any(mask != union for _sink, mask in self._sinks[wd]):
            self._mixed.add(wd)
        else:
            self._mixed.discard(wd)

    def _forget(self, wd: int) -> list[tuple[EventSink, int]]:
        """Drop every record of watch C{wd}; return its sinks."""
        for path in self._paths.pop(wd, ()):
            if self._wd_of.get(path) == wd:
                del self._wd_of[path]
        self._union.pop(wd, None)
        self._mixed.discard(wd)
        return self._sinks.pop(wd, [])

    def watch_count(self) -> int:
        """How many kernel watches this instance holds."""
        return len(self._sinks)

    def doRead(self):
        """Read what the kernel has queued, hand over a read's worth (L{ReadAhead})."""
        return self._reader.turn()

    def _read_again(self) -> None:
        if self.connected:
            self.startReading()

    def _hand_over(self, in_: bytes) -> None:
        """
        Parse one read's worth of events and hand them to their sinks, one
        call per watched directory and read (a burst into one directory
        costs one call per few thousand events, not one per event).
        """
        read_time = self._clock.seconds()
        unpack = _HEADER.unpack_from
        sinks_of = self._sinks.get
        batches: dict[int, list[tuple[bytes, int]]] = {}
        size = len(in_)
        self._span.read(size)
        offset = 0
        count = 0
        while offset + 16 <= size:
            wd, mask, _cookie, length = unpack(in_, offset)
            start = offset + 16
            offset = start + length
            count += 1
            if sinks_of(wd) is None:
                if wd == -1 and mask & IN_Q_OVERFLOW:
                    # Handled once what was queued behind it is read too.
                    self.overflows += 1
                    self._span.marked(self._reader.behind())
                # Otherwise: the late IN_IGNORED of a watch we already
                # dropped, or an event that was queued before its removal.
                continue
            if mask & _ENDS_WATCH:
                # What came before the end of the watch goes first.
                self._dispatch(wd, batches.pop(wd, None), read_time)
                self._end_watch(wd, mask)
                continue
            pending = batches.get(wd)
            if pending is None:
                pending = batches[wd] = []
            pending.append((in_[start:offset].rstrip(b"\0"), mask))
        self.events += count
        for wd, batch in batches.items():
            self._dispatch(wd, batch, read_time)
        if self._span.due():
            # After every event it may have spoilt: a sink told of the loss
            # must not then get older events as if current.
            self._overflowed()

    def _dispatch(self, wd: int, batch: Batch | None, read_time: float) -> None:
        if not batch:
            return
        union = self._union.get(wd) if wd in self._mixed else None
        for sink, mask in self._sinks.get(wd, ()):
            # Usually every sink of a watch asked for the same events: the
            # batch is handed over as it is, no copy per sink.
            if union is None or mask == union:
                mine = batch
            else:
                mine = [e for e in batch if e[1] & mask & ~_FLAGS]
            if not mine:
                continue
            try:
                sink.file_events(mine, read_time)
            except Exception:
                # A failing sink must not end the reading (the reactor would
                # drop the descriptor) nor cost the other sinks their events.
                self._log.failure("Handling inotify events failed")

    def _overflowed(self) -> None:
        self._log.warn(
            "The kernel inotify queue overflowed (overflow {count}): events "
            "were dropped; listing every directory",
            count=self.overflows,
        )
        for sinks in list(self._sinks.values()):
            for sink, _mask in sinks:
                try:
                    sink.events_lost()
                except Exception:
                    self._log.failure("Handling lost inotify events failed")
        if self._on_overflow is not None:
            self._on_overflow()

    def _end_watch(self, wd: int, mask: int) -> None:
        """
        One watch is over; every other watch goes on (unlike Twisted's
        C{loseConnection()} on C{IN_DELETE_SELF}).
        """
        sinks = self._forget(wd)
        if mask & IN_MOVE_SELF:
            # A moved directory is still watched by the kernel, under its new
            # name: drop that watch, it no longer covers the configured path.
            self._calls.rm_watch(self._descriptor, wd)
        for sink, _mask in sinks:
            try:
                sink.watch_ended(mask)
            except Exception:
                self._log.failure("Handling the end of a watch failed")

    def backlog(self) -> int:
        """Bytes of events read and not handed over yet (see L{ReadAhead})."""
        return self._reader.held

    def drain(self) -> None:
        """
        Hand over now the events waiting, read or still queued (see
        L{ReadAhead.drain}).  Used when stopping (a file created just before
        SIGTERM must be announced before the watch is dropped) and by timers
        that need the events of the time before them.
        """
        self._reader.drain()

    def close(self) -> None:
        """Drop every watch and close the inotify descriptor."""
        for table in (self._sinks, self._paths, self._wd_of, self._union, self._mixed):
            table.clear()
        self._pacing.close()
        self._reader.close()
        self.loseConnection()

    def loseConnection(self) -> None:
        """
        Close now: there is nothing to write first (L{FileDescriptor}'s
        would wait for the descriptor to be writable).
        """
        if self.connected:
            self.connectionLost(Failure(main.CONNECTION_DONE))

    def connectionLost(self, reason: Failure) -> None:
        """
        Out of the reactor, and the descriptor closed: by L{close}, or by the
        reactor after a read failed.
        """
        super().connectionLost(reason)
        self._reader.close()
        descriptor, self._descriptor = self._descriptor, -1
        if descriptor >= 0:
            try:
                os.close(descriptor)
            except OSError as e:
                self._log.error("Closing the inotify descriptor failed: {error}", error=e)
