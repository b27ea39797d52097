"""
A polling event source: directories scanned every C{poll_interval} seconds.

Where inotify cannot be trusted (a network or FUSE filesystem, see
L{dirobserver.sources.fstype}), or cannot be had (a tree past
C{fs.inotify.max_user_watches}, see L{dirobserver.sources.tree}), a L{Poller} stands
in for the L{dirobserver.sources.inotify.InotifySource}: same C{add}/C{remove}, same sinks
(L{dirobserver.sources.interface.EventSink}), same C{(name, mask)} batches.

A scan must be cheap, since it runs every few seconds over directories of a
hundred thousand files.  It reads names only (C{os.scandir}, in chunks so the
reactor never waits long), keeps them in a set, and compares that set with
the previous scan's: a C-level set difference.  Only the names that are new
are looked at (one C{lstat}: a directory, or a file whose size and
modification time are watched until it is complete).  The memory of a scan
is the set of names: about 90 bytes a name of 20 characters.

A name that was not there at the previous scan is reported as
C{IN_MOVED_TO} (with C{IN_ISDIR} for a directory): like a name moved into a
watched directory, it is complete, because the poller waited for it to be.
When the section waits for complete files (C{settle}, or C{announce =
closed}, whose closes a scan cannot see), a new file is reported only once
its size and modification time stayed the same over one scan at least and
over C{settle} seconds: a network filesystem's clock need not agree with
ours, so the time is our own.  Names gone since the previous scan are
reported as C{IN_DELETE} to sinks that asked for that bit.

The first scan of a directory reports nothing: it is what the listing that
follows every new watch announces (C{"exists"}).  A listing tells the poller
which names it saw (L{listed}); those become the previous scan, so a file
created during the listing, after the listing passed its place, is reported
by the next scan rather than lost.  A sub-directory that appears is polled
from an empty previous scan (C{listed(handle, ())}): everything in it is new.

A directory that cannot be scanned any more ends its "watch" as inotify's
would: C{IN_DELETE_SELF} when it is gone or was replaced by another
directory (its device and inode changed), C{IN_IGNORED} otherwise
(permission denied, say).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Generator, Iterable, Iterator

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.sources.identity import directory_identity
from dirobserver.sources.interface import Batch, EventSink
from dirobserver.sources.masks import (
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
)
from dirobserver.sources.walk import CHUNK, DirEntries, Walk
from dirobserver.util.periodic import Periodic
from dirobserver.util.quiet import is_quiet

#: What a sink asks for to be told of names that went away.
_GONE = IN_DELETE | IN_MOVED_FROM


class _Polled:
    """One polled directory: its sink and what its previous scan saw."""

    __slots__ = ("handle", "path", "sink", "mask", "identity", "known", "pending", "removed", "retiring")

    def __init__(self, handle: int, path: bytes, sink: EventSink, mask: int, identity: tuple[int, int]) -> None:
        self.handle = handle
        self.path = path
        self.sink = sink
        self.mask = mask
        self.identity = identity
        #: the names of the previous scan (None: not scanned nor listed yet)
        self.known: set[bytes] | None = None
        #: new files not complete yet: name -> [size, mtime_ns, since]
        self.pending: dict[bytes, list[float]] = {}
        self.removed = False
        #: watched by inotify now: one more scan (for what came before the
        #: watch), then no more
        self.retiring = False


class Poller:
    """
    Scans its directories every C{interval} seconds (see the module docstring).

    @ivar scans: directory scans done.
    @ivar reported: names reported to sinks.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        cooperator: task.Cooperator,
        interval: float,
        settle: float = 0.0,
        closed: bool = False,
        what: str = "Polling",
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """
        @param cooperator: runs the scans (the service's own).
        @param settle: seconds a new file's size and modification time must
            stay the same before it is reported.
        @param closed: the section announces closed files: a new file waits
            for one scan that sees it unchanged, even with no C{settle}.
        @param what: names the poller in log lines.
        @param on_tick: called after each round of scans.
        """
        self._clock = clock
        self._cooperator = cooperator
        self.interval = interval
        self.settle = settle
        self._waits = settle > 0 or closed
        self._on_tick = on_tick
        self._dirs: dict[int, _Polled] = {}
        self._next_handle = 1
        #: the directories of the round of scans under way (a directory
        #: added during the round is scanned in it too)
        self._round: list[_Polled] | None = None
        self._task: task.CooperativeTask | None = None
        self._periodic = Periodic(self._tick, interval, what, clock)
        self.scans = 0
        self.reported = 0

    def __len__(self) -> int:
        return len(self._dirs)

    # -- the EventSource interface -------------------------------------------------

    def add(self, path: bytes, sink: EventSink, mask: int) -> int:
        """
        Poll directory C{path} for C{sink}.

        @return: a handle for L{remove} and L{listed}.
        @raise WatchError: C{path} is not a directory that can be read.
        """
        handle = self._next_handle
        polled = _Polled(handle, path, sink, mask, directory_identity(path))
        self._next_handle += 1
        self._dirs[handle] = polled
        if self._round is not None:
            self._round.append(polled)
        if not self._periodic.running:
            # It runs until close(), even with no directory left (a tree's
            # polled sub-directories come and go): stopping a LoopingCall
            # from inside its own call and starting it again would run it twice.
            self._periodic.start()
        return handle

    def remove(self, handle: int, sink: EventSink) -> None:
        """Stop polling C{handle} (its sink hears nothing more)."""
        polled = self._dirs.get(handle)
        if polled is not None and polled.sink is sink:
            self._drop(handle)

    def drain(self) -> None:
        """Nothing waits to be read: a poller knows of changes only by its scans."""

    def backlog(self) -> int:
        """Nothing read waits: 0."""
        return 0

    def listed(self, handle: int, names: Iterable[bytes]) -> None:
        """A listing saw C{names} in the directory: they are its previous scan."""
        polled = self._dirs.get(handle)
        if polled is not None:
            polled.known = set(names)

    def retire(self, handle: int) -> None:
        """The directory is watched otherwise now: scan it once more, then stop."""
        polled = self._dirs.get(handle)
        if polled is not None:
            polled.retiring = True

    def close(self) -> None:
        """Stop polling every directory, and the scans."""
        for handle in list(self._dirs):
            self._drop(handle)
        self._periodic.stop()
        if self._task is not None:
            self._task.stop()

    def _drop(self, handle: int) -> None:
        self._dirs.pop(handle).removed = True

    # -- the scans --------------------------------------------------------------------

    def _tick(self) -> defer.Deferred:
        self._round = list(self._dirs.values())
        self._task = self._cooperator.cooperate(self._scan_all(self._round))
        return self._task.whenDone().addErrback(self._stopped).addBoth(self._tick_done)

    @staticmethod
    def _stopped(failure: Failure) -> None:
        failure.trap(task.TaskStopped, task.SchedulerStopped)

    def _tick_done(self, result: object) -> object:
        self._round = self._task = None
        if self._on_tick is not None and self._dirs:
            self._on_tick()
        return result

    def _scan_all(self, work: list[_Polled]) -> Iterator[object]:
        i = 0
        while i < len(work):  # it grows while this runs
            polled = work[i]
            i += 1
            if not polled.removed:
                yield from self._scan(polled)
                if polled.retiring and not polled.removed:
                    self._drop(polled.handle)
            yield None

    def _scan(self, polled: _Polled) -> Iterator[object]:
        """One scan of one directory (see the module docstring)."""
        now = self._clock.seconds()
        current: set[bytes] = set()

        def names(_polled: _Polled, chunk: DirEntries) -> None:
            current.update([entry.name for entry in chunk])

        yield from Walk(polled, self._entering, names, self._read_on, unreadable=self._unreadable).run()
        if polled.removed:
            return  # removed during the scan, or its "watch" ended
        self.scans += 1
        known, polled.known = polled.known, current
        if known is None:
            return  # the first look: the listing that follows announces it
        new = current - known
        batch: Batch = []
        # |gone| = |known| - |known & current|, and |known & current| =
        # |current| - |new|: the second set difference only when needed.
        if polled.mask & _GONE and len(known) - len(current) + len(new):
            batch += [(name, IN_DELETE) for name in known - current]
        if polled.pending:
            yield from self._pending(polled, current, now, batch)
        for i, name in enumerate(new, 1):
            self._new(polled, name, now, batch)
            if i % CHUNK == 0:
                self._deliver(polled, batch, now)
                batch = []
                yield None
                if polled.removed:
                    return
        self._deliver(polled, batch, now)

    def _entering(self, polled: _Polled) -> bytes | None:
        """The path to scan; None when the directory is no longer the one polled."""
        try:
            info = os.stat(polled.path)
        except OSError as e:
            self._unreadable(polled, e)
            return None
        if (info.st_dev, info.st_ino) != polled.identity or not stat.S_ISDIR(info.st_mode):
            self._end(polled, IN_DELETE_SELF | IN_MOVE_SELF)
            return None
        return polled.path

    @staticmethod
    def _read_on(polled: _Polled) -> Generator[None, None, bool]:
        """A turn in a large directory; the scan stops if the directory was removed meanwhile."""
        yield None
        return not polled.removed

    def _unreadable(self, polled: _Polled, error: OSError) -> None:
        gone = isinstance(error, (FileNotFoundError, NotADirectoryError))
        self._end(polled, IN_DELETE_SELF if gone else IN_IGNORED)

    def _new(self, polled: _Polled, name: bytes, now: float, batch: Batch) -> None:
        try:
            info = os.lstat(os.path.join(polled.path, name))
        except OSError:
            return  # gone already
        if stat.S_ISDIR(info.st_mode):
            batch.append((name, IN_MOVED_TO | IN_ISDIR))
        elif self._waits:
            polled.pending[name] = [info.st_size, info.st_mtime_ns, now]
        else:
            batch.append((name, IN_MOVED_TO))

    def _pending(self, polled: _Polled, current: set[bytes], now: float, batch: Batch) -> Iterator[None]:
        """New files seen before: report those unchanged for C{settle}."""
        pending = polled.pending
        for i, (name, seen) in enumerate(list(pending.items()), 1):
            if i % CHUNK == 0:
                yield None
            try:
                info = os.lstat(os.path.join(polled.path, name)) if name in current else None
            except OSError:
                info = None
            if info is None:
                del pending[name]  # gone: never complete
            elif seen[0] != info.st_size or seen[1] != info.st_mtime_ns:
                seen[:] = [info.st_size, info.st_mtime_ns, now]
            elif is_quiet(seen[2], self.settle, now):
                del pending[name]
                batch.append((name, IN_MOVED_TO))

    def _deliver(self, polled: _Polled, batch: Batch, now: float) -> None:
        if not batch or polled.removed:
            return
        self.reported += len(batch)
        try:
            polled.sink.file_events(batch, now)
        except Exception:
            self._log.failure("Handling the names found by a scan failed")

    def _end(self, polled: _Polled, mask: int) -> None:
        """The directory cannot be scanned: its "watch" ends."""
        if polled.removed:
            return
        self._drop(polled.handle)
        if polled.retiring:
            return  # inotify watches it, and tells of its end
        try:
            polled.sink.watch_ended(mask)
        except Exception:
            self._log.failure("Handling the end of a polled directory failed")
