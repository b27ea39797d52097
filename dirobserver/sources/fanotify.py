"""
The fanotify source: one notification group and one filesystem mark per
filesystem, in place of one inotify watch per directory.

A recursive section watched by inotify costs one kernel watch (about 1 KiB)
per directory, and hits C{fs.inotify.max_user_watches}.  Since Linux 5.9
fanotify reports directory entry events with the file handle of the
directory and the entry's name (C{FAN_REPORT_DFID_NAME}), and one mark on a
filesystem (C{FAN_MARK_FILESYSTEM}, which needs C{CAP_SYS_ADMIN}) covers
every directory of it, new ones included.  L{FanotifySource} is a
L{FileDescriptor} read by the reactor, like
L{dirobserver.sources.inotify.InotifySource}, and implements the same
L{dirobserver.sources.interface.EventSource}: C{add} costs no kernel
resource, only the handle of the directory (C{name_to_handle_at}) and an
entry in a dict.

Events of every directory of the filesystem reach the group; those of a
directory no sink asked for are dropped after one dict look-up of the
handle bytes.  The event bits are inotify's (see
L{dirobserver.sources.fanotify_calls}); the records are parsed, and merged
events split again, by L{dirobserver.sources.fanotify_events}.

What inotify says with C{IN_MOVE_SELF} / C{IN_DELETE_SELF} on a
sub-directory's own watch is said here by its parent: C{FAN_MOVED_FROM} or
C{FAN_DELETE} of a directory whose path a sink asked for ends that watch.  A
directory whose parent nobody watches (a section's top) ends with
C{FAN_MOVE_SELF} / C{FAN_DELETE_SELF}, unless its path still leads to it (a
rename already followed).

The directories registered one by one are
L{dirobserver.sources.fanotify_watches}'s.  A recursive section need not
register its sub-directories: L{add_tree}
registers its top once, and the events of directories nobody registered
are routed by their path (L{dirobserver.sources.fanotify_trees}), found
from their handles (L{dirobserver.sources.fanotify_paths}).

The group and its marks are made by
L{dirobserver.sources.fanotify_choice} (C{open_group}, C{FanotifyGroup}),
which the service calls in C{privilegedStartService}, before twistd drops privileges: reading the
group and C{name_to_handle_at} need none afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.sources.fanotify_calls import (
    FAN_ONDIR,
    FAN_Q_OVERFLOW,
    LIBC_FANOTIFY,
    LibcFanotify,
)
from dirobserver.sources.fanotify_events import parse, split
from dirobserver.sources.fanotify_paths import HandlePaths
from dirobserver.sources.fanotify_trees import TreeRoutes
from dirobserver.sources.fanotify_watches import DirectoryWatches
from dirobserver.sources.interface import Batch, EventSink
from dirobserver.sources.masks import (
    IN_DELETE,
    IN_DELETE_SELF,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
)
from dirobserver.sources.overflow_span import OverflowSpan
from dirobserver.sources.read_ahead import ReadAhead
from dirobserver.util.reactor import IDaemonReactor

_SELF = IN_MOVE_SELF | IN_DELETE_SELF
_GONE = IN_MOVED_FROM | IN_DELETE
_MOVES = IN_MOVED_FROM | IN_MOVED_TO


class FanotifySource(FileDescriptor):
    """
    One fanotify group in the reactor, serving any number of directories on
    the filesystems it has marks on.

    @ivar overflows: how many times the kernel queue overflowed.
    @ivar events: how many events were read.
    """

    _log = Logger()

    def __init__(self, reactor: IDaemonReactor, descriptor: int,
                 on_overflow: Callable[[], None] | None = None,
                 calls: LibcFanotify = LIBC_FANOTIFY, devices: set[int] | None = None,
                 paths: HandlePaths | None = None) -> None:
        """
        @param descriptor: the group, with its marks (this source closes it).
        @param devices: the devices (C{st_dev}) the group has marks on, if
            known: a directory on another one is refused (C{EXDEV}), since
            no event of it would come.
        @param paths: the paths of directories by their handles, for the
            trees (L{add_tree}); none: every tree registers each directory.
        """
        super().__init__(reactor=reactor)
        self._clock: IReactorTime = reactor
        self._calls = calls
        self._descriptor = descriptor
        self.connected = 1
        self._on_overflow = on_overflow
        self._watches = DirectoryWatches(calls, devices)
        self._routes = TreeRoutes(paths if paths is not None else HandlePaths(calls))
        self.overflows = 0
        self.events = 0
        self._span = OverflowSpan()
        self._reader = ReadAhead(self._clock, descriptor, "fanotify", self._hand_over, self.connectionLost)

    def fileno(self) -> int:
        """The group's descriptor (-1 once closed), for the reactor."""
        return self._descriptor

    def watch_count(self) -> int:
        """How many directories sinks asked for (they cost no kernel watch)."""
        return len(self._watches)

    def cached_directories(self) -> int:
        """How many directories' paths the trees' routing remembers (see L{dirobserver.sources.fanotify_paths})."""
        return len(self._routes.paths)

    def cached_paths(self) -> list[bytes]:
        """The paths of the directories L{cached_directories} counts (those that lead somewhere)."""
        return self._routes.paths.remembered()

    # -- lazy trees ------------------------------------------------------------------

    def tree_problem(self, top: bytes) -> str | None:
        """Why L{add_tree} cannot be used for C{top} (None: it can); asked once privileges are dropped."""
        paths = self._routes.paths
        why = paths.problem()
        if why is None and not paths.leads_to(top):
            why = ("its path is not the one its handle leads to on the filesystem's mount "
                   "(a bind mount, or another mount of the same filesystem?)")
        return why

    def add_tree(self, top: bytes, sink: EventSink, mask: int) -> int:
        """
        Deliver the events of C{top} and of every directory below it to
        C{sink}, names relative to C{top}, for C{mask}.
        Nothing is registered per directory: they are routed by their
        paths (see L{dirobserver.sources.fanotify_trees}).
        """
        tree = self._watches.new_id()
        self._routes.add(tree, os.path.realpath(top), sink, mask & ~IN_ONLYDIR)
        return tree

    def remove_tree(self, tree: int, sink: EventSink) -> None:
        """Stop delivering the events of tree C{tree} to C{sink}."""
        if self._routes.remove(tree, sink) and not self._routes:
            self._routes.forget_all()  # no tree left: nothing to route

    # -- EventSource ---------------------------------------------------------------

    def add(self, path: bytes, sink: EventSink, mask: int) -> int:
        """Deliver the events of directory C{path} selected by C{mask} to C{sink}."""
        return self._watches.add(path, sink, mask)

    def remove(self, handle: int, sink: EventSink) -> None:
        """Stop delivering the events of C{handle} to C{sink}."""
        self._watches.remove(handle, sink)

    def backlog(self) -> int:
        """Bytes of events read and not handed over yet (see L{ReadAhead})."""
        return self._reader.held

    def drain(self) -> None:
        """Read and dispatch everything the kernel has queued, now."""
        self._reader.drain()

    # -- reading -------------------------------------------------------------------

    def doRead(self):
        """Read what the kernel has queued, hand over a read's worth (L{ReadAhead})."""
        return self._reader.turn()

    def _hand_over(self, data: bytes) -> None:
        """Parse one read and hand each watched directory its events, in order."""
        read_time = self._clock.seconds()
        by_key = self._watches.by_key.get
        # Watches by their positive ids, trees by their negative ones, in
        # the order of their first event.
        batches: dict[int, Batch] = {}
        count = 0
        self._span.read(len(data))
        routes = self._routes
        routes.new_read()
        for key, name, mask in parse(data):
            count += 1
            wid = by_key(key)
            if routes and name:
                if mask & FAN_ONDIR and mask & _MOVES:
                    routes.moved(key, name)
                for tree, prefix in routes.targets(key):
                    pending = batches.get(-tree)
                    if pending is None:
                        pending = batches[-tree] = []
                    for bit in split(mask):
                        pending.append((prefix + name, bit))
            if wid is None:
                if mask & FAN_Q_OVERFLOW:
                    # Handled once what was queued behind it is read too
                    # (see dirobserver.sources.overflow_span).
                    self.overflows += 1
                    self._span.marked(self._reader.behind())
                continue  # a directory nobody asked for: the common drop
            if not name:
                if mask & _SELF:
                    self._flush(batches, read_time)
                    self._self_ended(wid, mask)
                continue
            if mask & FAN_ONDIR and mask & _GONE:
                child = self._watches.child(wid, name)
                if child is not None:
                    self._flush(batches, read_time)
                    self._end(child, IN_MOVE_SELF if mask & IN_MOVED_FROM else IN_DELETE_SELF)
            pending = batches.get(wid)
            if pending is None:
                pending = batches[wid] = []
            for bit in split(mask):
                pending.append((name, bit))
        self.events += count
        self._flush(batches, read_time)
        if self._span.due():
            self._overflowed()

    def _flush(self, batches: dict[int, Batch], read_time: float) -> None:
        for wid, batch in batches.items():
            if wid < 0:
                route = self._routes.sink(-wid)
                sinks = [] if route is None else [route]
            else:
                watch = self._watches.by_id.get(wid)
                if watch is None:
                    continue
                sinks = list(watch.sinks)
            for sink, mask in sinks:
                mine = [e for e in batch if e[1] & mask]
                if not mine:
                    continue
                try:
                    sink.file_events(mine, read_time)
                except Exception:
                    self._log.failure("Handling fanotify events failed")
        batches.clear()

    def _self_ended(self, wid: int, mask: int) -> None:
        """A watched directory was moved or deleted: its watch ends unless its path still leads to it."""
        if not self._watches.still_there(wid):
            self._end(wid, mask & _SELF)

    def _end(self, wid: int, mask: int) -> None:
        watch = self._watches.forget(wid)
        if watch is None:
            return
        for sink, _mask in watch.sinks:
            try:
                sink.watch_ended(mask)
            except Exception:
                self._log.failure("Handling the end of a watch failed")

    def _overflowed(self) -> None:
        self._log.warn(
            "The kernel fanotify queue overflowed (overflow {count}): events were dropped; "
            "listing every directory", count=self.overflows,
        )
        self._routes.forget_all()  # a rename may be among the events lost
        for sink in self._watches.sinks() + self._routes.sinks():
            try:
                sink.events_lost()
            except Exception:
                self._log.failure("Handling lost fanotify events failed")
        if self._on_overflow is not None:
            self._on_overflow()

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Forget every directory and close the group (its marks go with it)."""
        self._watches.clear()
        self._routes.paths.close()  # its filesystem descriptors
        self._routes = TreeRoutes(HandlePaths(self._calls))
        self._reader.close()
        self.loseConnection()

    def loseConnection(self) -> None:
        """Close now: there is nothing to write first."""
        if self.connected:
            self.connectionLost(Failure(main.CONNECTION_DONE))

    def connectionLost(self, reason: Failure) -> None:
        """Out of the reactor, and the descriptor closed."""
        super().connectionLost(reason)
        self._reader.close()
        descriptor, self._descriptor = self._descriptor, -1
        if descriptor >= 0:
            try:
                os.close(descriptor)
            except OSError as e:
                self._log.error("Closing the fanotify descriptor failed: {error}", error=e)
