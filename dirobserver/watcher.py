"""
The inotify layer: one Twisted C{INotify} for every monitored directory.

Twisted's L{twisted.internet.inotify.INotify} owns the file descriptor and its
place in the reactor; L{Watcher} subclasses it to fix, once and here only,
what makes it unfit for a daemon that must not lose events:

 1. On C{IN_DELETE_SELF}, C{INotify._doRead} calls C{loseConnection()}: the
    deletion of one watched directory silently ends every other watch of the
    instance.  Opening one instance per directory is no way out, since
    C{fs.inotify.max_user_instances} is 128.  Here the end of one watch
    (deleted, moved, unmounted) only ends that watch.
 2. C{IN_Q_OVERFLOW} (watch descriptor -1: the kernel queue was full and
    events were dropped) is discarded by Twisted.  Here it is counted and
    reported to C{on_overflow}, so the caller can list every directory.
 3. Twisted reads 8 KiB per reactor turn and rebuilds its byte buffer for
    every event, and builds a C{FilePath} per event.  Here one read takes up
    to 256 KiB, events are parsed in place with C{struct.unpack_from}, and the
    name is handed over as bytes: the mask already says whether the entry is
    a directory, so nothing needs a path object or a C{stat}.

A sink (see L{Sink}) receives the events of one directory.  Several sinks may
share one watch (two sections of the configuration watching the same
directory get the same watch descriptor from the kernel).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from typing import Callable, Protocol

from twisted.internet import inotify, main
from twisted.logger import Logger

IN_CREATE = inotify.IN_CREATE
IN_MOVED_TO = inotify.IN_MOVED_TO
IN_DELETE_SELF = inotify.IN_DELETE_SELF
IN_MOVE_SELF = inotify.IN_MOVE_SELF
IN_UNMOUNT = inotify.IN_UNMOUNT
IN_IGNORED = inotify.IN_IGNORED
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = inotify.IN_ISDIR
IN_ONLYDIR = inotify.IN_ONLYDIR

#: What a monitored directory is watched for: entries appearing in it, and the
#: directory itself going away.  (C{IN_ONLYDIR}: refuse to watch a file.)
WATCH_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR

#: Masks that end a watch: after them the watch no longer reports the
#: configured path.
_ENDS_WATCH = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED

_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE = 256 * 1024
#: Reads per reactor turn at most, so a flood cannot starve timers and Redis.
_READS_PER_TURN = 4

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_rm_watch.restype = ctypes.c_int


class WatchError(OSError):
    """
    A directory could not be watched.  C{errno} says why (C{ENOENT},
    C{ENOTDIR}, C{EACCES}, C{ENOSPC} for the C{max_user_watches} limit).
    """

    def __str__(self) -> str:
        path = os.fsdecode(self.filename)
        if self.errno == errno.ENOSPC:
            return (
                f"cannot watch {path}: the inotify watch limit is reached "
                "(raise fs.inotify.max_user_watches)"
            )
        return f"cannot watch {path}: {self.strerror}"


class Sink(Protocol):
    """What receives the events of one watched directory."""

    def file_events(self, batch: list[tuple[bytes, int]]) -> None:
        """
        Entries appeared, in this order: C{(name, mask)} pairs, where
        C{mask & IN_ISDIR} says the entry is a directory.
        """

    def watch_ended(self, mask: int) -> None:
        """The watch is over: the directory was deleted, moved or unmounted."""


class Watcher(inotify.INotify):
    """
    One inotify instance in the reactor, serving any number of directories.

    @ivar overflows: how many times the kernel queue overflowed.
    @ivar events: how many events were read.
    @ivar read_time: when the events being dispatched were read; sinks use it
        as the event time (one clock call per read, not per event).
    """

    _log = Logger()

    def __init__(
        self,
        reactor=None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(reactor=reactor)
        self._sinks: dict[int, list[Sink]] = {}
        self._on_overflow = on_overflow
        self.overflows = 0
        self.events = 0
        #: When the events being dispatched were read (one clock call per read).
        self.read_time = self.reactor.seconds()

    def add(self, path: bytes, sink: Sink) -> int:
        """
        Start delivering the events of directory C{path} to C{sink}.

        @return: the watch descriptor, to give back to L{remove}.
        @raise WatchError: when the kernel refuses the watch.
        """
        wd = _libc.inotify_add_watch(self._fd, path, WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            raise WatchError(code, os.strerror(code), path)
        self._sinks.setdefault(wd, []).append(sink)
        return wd

    def remove(self, wd: int, sink: Sink) -> None:
        """Stop delivering events of watch C{wd} to C{sink}."""
        sinks = self._sinks.get(wd)
        if sinks is None or sink not in sinks:
            return
        sinks.remove(sink)
        if not sinks:
            del self._sinks[wd]
            # The kernel may have ended the watch already; EINVAL is fine.
            _libc.inotify_rm_watch(self._fd, wd)

    def watch_count(self) -> int:
        """How many kernel watches this instance holds."""
        return len(self._sinks)

    def doRead(self):
        """Read and dispatch what the kernel has queued, in large reads."""
        for _ in range(_READS_PER_TURN):
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return None
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                self._log.error("Reading inotify events failed: {error}", error=e)
                return main.CONNECTION_LOST
            if not data:
                return main.CONNECTION_DONE
            self._doRead(data)
            if len(data) < _READ_SIZE // 2:
                # The queue is drained (a read returns whole events only, so a
                # short read means there was no more).
                return None
        return None

    def _doRead(self, in_: bytes) -> None:
        """
        Parse one read's worth of events and hand them to their sinks, one
        call per watched directory and read (a burst into one directory
        costs one call per few thousand events, not one per event).
        """
        self.read_time = self.reactor.seconds()
        unpack = _HEADER.unpack_from
        sinks_of = self._sinks.get
        batches: dict[int, list[tuple[bytes, int]]] = {}
        size = len(in_)
        offset = 0
        count = 0
        while offset + 16 <= size:
            wd, mask, _cookie, length = unpack(in_, offset)
            start = offset + 16
            offset = start + length
            count += 1
            if sinks_of(wd) is None:
                if wd == -1 and mask & IN_Q_OVERFLOW:
                    self._overflowed()
                # Otherwise: the late IN_IGNORED of a watch we already
                # dropped, or an event that was queued before its removal.
                continue
            if mask & _ENDS_WATCH:
                # What came before the end of the watch goes first.
                self._dispatch(wd, batches.pop(wd, None))
                self._end_watch(wd, mask)
                continue
            batch = batches.get(wd)
            if batch is None:
                batch = batches[wd] = []
            batch.append((in_[start:offset].rstrip(b"\0"), mask))
        self.events += count
        for wd, batch in batches.items():
            self._dispatch(wd, batch)

    def _dispatch(self, wd: int, batch: list[tuple[bytes, int]] | None) -> None:
        if not batch:
            return
        for sink in self._sinks.get(wd, ()):
            try:
                sink.file_events(batch)
            except Exception:
                # A failing sink must not end the reading (the reactor would
                # drop the descriptor) nor cost the other sinks their events.
                self._log.failure("Handling inotify events failed")

    def _overflowed(self) -> None:
        self.overflows += 1
        self._log.warn(
            "The kernel inotify queue overflowed (overflow {count}): events "
            "were dropped; listing every directory",
            count=self.overflows,
        )
        if self._on_overflow is not None:
            self._on_overflow()

    def _end_watch(self, wd: int, mask: int) -> None:
        """
        One watch is over; every other watch goes on (unlike Twisted's
        C{loseConnection()} on C{IN_DELETE_SELF}).
        """
        sinks = self._sinks.pop(wd)
        if mask & IN_MOVE_SELF:
            # A moved directory is still watched by the kernel, under its new
            # name: drop that watch, it no longer covers the configured path.
            _libc.inotify_rm_watch(self._fd, wd)
        for sink in sinks:
            try:
                sink.watch_ended(mask)
            except Exception:
                self._log.failure("Handling the end of a watch failed")

    def drain(self) -> None:
        """
        Read and dispatch everything the kernel has queued, now.  Used when
        stopping: a file created just before SIGTERM is already in the
        kernel queue, and must be announced before the watch is dropped.
        """
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._doRead(data)

    def close(self) -> None:
        """Drop every watch and close the inotify descriptor."""
        self._sinks.clear()
        self.loseConnection()
