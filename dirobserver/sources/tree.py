"""
A recursive section's tree: the watches of its sub-directories.

The section's monitor watches its configured directory (the top) and keeps
that watch's lifecycle (missing, back, a symbolic link switched); a
L{DirectoryTree} holds everything below it.  Each sub-directory is a node:
the sink (L{dirobserver.sources.interface.EventSink}) of its own watch, which knows
its path.  A node hands its events on with names made relative to the top
(C{b"a/b/f.csv"}), so the section's filters, its table of files waiting to
be complete and its listings deal with one kind of name everywhere, and an
event's C{directory} is the directory that holds the file
(L{dirobserver.announce.event.TreeEncoder}).

Nothing is missed in a new sub-directory.  Every watcher that reads a new
directory before it watches it loses what is created between the two; here
a sub-directory that appears (created, or moved in with all its content) is
watched first, then read, and what the reading finds is announced as
created (as a name moved in: complete).  So C{mkdir -p a/b/c && touch
a/b/c/f} loses nothing, whichever of the observer and the producer is
faster; at worst a file made between the watch and the reading is announced
twice.  The reading is cooperative and waits while the writer holds many
events, so a whole tree moved in never freezes the reactor.

A sub-directory deleted, moved out or unmounted ends its watch and the
watches of everything below it, quietly (one debug line): the rest of the
tree goes on.  When a directory of the same name is there again (a rename
within the tree keeps the kernel's watch, whose end then comes late), it is
watched and read anew.  Sub-directories whose name matches
C{ignore_directories} are neither watched nor read.  Symbolic links are
not followed.

Which source watches each directory (inotify, or the section's poller: in
a polled section, below a network mount, past C{fs.inotify.max_user_watches})
is L{dirobserver.sources.tree_watches.TreeWatches}'s to decide.

A tree watched by fanotify needs no watch per directory: where the source
can open directories by their handles, a L{dirobserver.sources.lazy_tree.LazyTree}
does the work, and this tree keeps no node below the top.

The listings of the section (start-up, forced poll, overflow, reconnect)
walk the whole tree through the L{dirobserver.announce.scan.Walker} methods of
the tree: L{enter} watches a sub-directory before the listing reads it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from twisted.internet import task
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.announce.event import decode_name
from dirobserver.sources.fanotify import FanotifySource
from dirobserver.sources.interface import Batch, EventSource
from dirobserver.sources.lazy_tree import LazyTree
from dirobserver.sources.masks import IN_CREATE, IN_ISDIR, IN_MOVED_TO
from dirobserver.sources.tree_node import Node, TreeContext
from dirobserver.sources.tree_watches import TreeWatches
from dirobserver.sources.walk import DirEntries, Turn, Walk

_APPEARED = IN_CREATE | IN_MOVED_TO


class DirectoryTree:
    """
    The sub-directories of one section (see the module docstring).

    @ivar subdirectories: sub-directories watched or polled now.
    """

    _log = Logger()

    def __init__(self, context: TreeContext) -> None:
        section = context.section
        self.section = section
        self.recursive = section.recursive
        self._deliver = context.deliver
        self._room = context.room
        self._clock = context.clock
        self._cooperator = context.cooperator
        self._watches = TreeWatches(section, context.mask, context.poller)
        self._top = Node(self, None, b"", os.fsencode(section.directory), b"")
        self._top.ended = True
        #: bumped when the whole tree is dropped: walks under way stop
        self._generation = 0
        #: the lazy tree, when a fanotify source routes the events below the top
        self._lazy: LazyTree | None = None
        self._said_eager = False
        self.subdirectories = 0

    def counts(self) -> dict[str, int]:
        """
        Sub-directories by how they are watched: C{"watched"} (inotify),
        C{"polled"} (a polled section, a network mount) and
        C{"past_watch_limit"} (polled for want of inotify watches).
        """
        return self._watches.counts(self.subdirectories, self._top.polled is not None)

    def retry_limited(self) -> None:
        """After a round of scans: see L{TreeWatches.retry}."""
        self._watches.retry()

    # -- the top directory, watched by the monitor ------------------------------

    def rooted(self, watcher: EventSource | None, handle: int, polled: bool,
               identity: tuple[int, int] | None) -> None:
        """
        The top directory is watched: by C{watcher} (inotify) with watch
        C{handle}, or by the section's poller with C{handle} (C{polled}).
        Sub-directories are then found and watched (not announced: the
        listing that follows the top's watch does that).

        @param identity: the top's C{(st_dev, st_ino)}, as the monitor
            found it when it set the watch (None: gone already, its end of
            watch follows).
        """
        self.clear()
        top = self._top
        top.ended = False
        self._watches.rooted(watcher, polled)
        top.poll_only = polled
        if polled:
            top.polled = handle
        else:
            top.wd = handle
        if identity is not None:
            top.device, top.inode = identity
        if self.recursive and isinstance(watcher, FanotifySource) and not polled and self._lazily(watcher):
            return
        if self.recursive:
            self._walk(top, announce=False)

    def _lazily(self, source: FanotifySource) -> bool:
        """Have C{source} route the events below the top to a lazy tree, if it can; whether it does."""
        why = source.tree_problem(self._top.path)
        if why is not None:
            if not self._said_eager:
                self._said_eager = True
                self._log.info("[{section}] fanotify: each sub-directory of {directory} is registered "
                               "(the tree cannot be lazy: {why})", section=self.section.name,
                               directory=self.section.directory, why=why)
            return False
        section = self.section
        self._lazy = LazyTree(section.name, self._top.path, self._watches.mask, section.subdirectories,
                              self.accepts_directory, self._deliver, self._found, self._run)
        self._lazy.start(source)
        return True

    def clear(self) -> None:
        """The top's watch ended (or the section stops): so do all the others."""
        self._generation += 1
        if self._lazy is not None:
            self._lazy.stop()
            self._lazy = None
        top = self._top
        for child in list(top.children.values()):
            self._drop(child)
        self._watches.cleared(top.polled is not None)
        top.wd = top.polled = None
        top.ended = True

    def top_events(self, batch: Batch) -> None:
        """Events of the top directory (the monitor's): sub-directories that appear."""
        if self._lazy is None:  # else the lazy tree has the top's events too
            self._appearances(self._top, batch)

    # -- the Walker interface (the section's listings) -----------------------------

    def accepts_directory(self, name: bytes) -> bool:
        """Whether sub-directory C{name} belongs to the tree (C{ignore_directories})."""
        return self.section.accepts_directory(decode_name(name))

    def enter(self, subdirectory: bytes) -> bool:
        """A listing reads C{subdirectory} next: watch it first if it is not."""
        if self._lazy is not None:
            return True  # the lazy tree's events come without a watch
        node = self._top
        parts = subdirectory.split(b"/")
        for part in parts[:-1]:
            node = node.children.get(part)  # type: ignore[assignment]
            if node is None:
                return False
        if node.ended:
            return False
        child = node.children.get(parts[-1])
        if child is not None:
            if self._still_there(child):
                return True
            # Another directory under that name, whose appearance was not
            # seen (events lost): watch this one.
            self._drop(child)
        return self._watch(node, parts[-1]) is not None

    def wants_names(self) -> bool:
        """Whether some directory is polled (and L{seen} wants the names a listing read)."""
        return self._watches.polled > 0

    def seen(self, subdirectory: bytes, names: list[bytes]) -> None:
        """A listing read C{names} in C{subdirectory}: its poller's previous scan."""
        node: Node | None = self._top
        for part in subdirectory.split(b"/") if subdirectory else ():
            node = node.children.get(part) if node is not None else None
        if node is not None:
            self._watches.listed(node, names)

    # -- events -----------------------------------------------------------------------

    def node_events(self, node: Node, batch: Batch, read_time: float) -> None:
        """Events of sub-directory C{node}'s watch: handed on, names relative to the top."""
        if node.ended:
            return
        self._appearances(node, batch)
        prefix = node.prefix
        self._deliver([(prefix + name, mask) for name, mask in batch], read_time)

    def _appearances(self, node: Node, batch: Batch) -> None:
        for name, mask in batch:
            if mask & IN_ISDIR and mask & _APPEARED:
                self._appeared(node, name)

    def _appeared(self, parent: Node, name: bytes) -> None:
        """Sub-directory C{name} appeared in C{parent}: watch it, then read it."""
        if parent.ended or not self.accepts_directory(name):
            return
        child = parent.children.get(name)
        if child is not None:
            if self._still_there(child):
                return  # the very directory watched already (a listing got there first)
            self._drop(child)
        child = self._watch(parent, name)
        if child is None:
            return
        if child.polled is not None:
            # Its poller reports everything in it at its next scan.
            self._watches.listed(child, ())
        else:
            self._walk(child, announce=True)

    def node_ended(self, node: Node) -> None:
        """The watch of C{node} ended: deleted, moved or unmounted."""
        if node.ended:
            return
        parent = node.parent
        assert parent is not None
        count = self._drop(node)
        self._log.debug(
            "[{section}] {path} is gone (deleted, moved or unmounted): stopped watching it "
            "({count} directories)",
            section=self.section.name, path=os.fsdecode(node.path), count=count,
        )
        # A directory of that name again (made again, or renamed within the
        # tree: its new name took the kernel's watch, which ends only now).
        try:
            if stat.S_ISDIR(os.lstat(node.path).st_mode):
                self._appeared(parent, node.name)
        except OSError:
            pass

    # -- watches ------------------------------------------------------------------------

    def _watch(self, parent: Node, name: bytes) -> Node | None:
        """Watch (or poll) sub-directory C{name} of C{parent}; None when it cannot be."""
        path = os.path.join(parent.path, name)
        try:
            info = os.lstat(path)
        except OSError:
            return None  # gone already
        if not stat.S_ISDIR(info.st_mode):
            return None
        node = Node(self, parent, name, path, parent.prefix + name + b"/")
        node.device, node.inode = info.st_dev, info.st_ino
        if not self._watches.watch(node, parent):
            return None
        parent.children[name] = node
        self.subdirectories += 1
        return node

    @staticmethod
    def _still_there(node: Node) -> bool:
        """Whether the directory at C{node}'s path is still the one it watches."""
        try:
            info = os.lstat(node.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == (node.device, node.inode)

    def _drop(self, node: Node) -> int:
        """End the watches of C{node} and of everything below it; return how many."""
        count = 0
        stack = [node]
        while stack:
            each = stack.pop()
            each.ended = True
            count += 1
            stack.extend(each.children.values())
            self._watches.unwatch(each)
        parent = node.parent
        if parent is not None and parent.children.get(node.name) is node:
            del parent.children[node.name]
        self.subdirectories -= count
        return count

    # -- reading new sub-directories ----------------------------------------------------

    def _walk(self, start: Node, announce: bool) -> None:
        """Read C{start} and what is below it, cooperatively (see L{_walking})."""
        self._run(self._walking(start, announce, self._generation))

    def _run(self, work: Iterator[object]) -> None:
        """Run a reading cooperatively; a failure is logged."""
        self._cooperator.cooperate(work).whenDone().addErrback(self._walk_failed)

    def _walk_failed(self, failure: Failure) -> None:
        if not failure.check(task.TaskStopped, task.SchedulerStopped):
            self._log.failure("[{section}] Reading a new sub-directory failed", failure,
                              section=self.section.name)

    def _walking(self, start: Node, announce: bool, generation: int) -> Iterator[object]:
        """
        Watch every sub-directory below C{start}, each before it is read.
        C{announce}: C{start} is new, and what is in it is announced (as
        moved in); else (the top, at its watch) the listing announces.
        """
        subdirectories = self.section.subdirectories
        found: Batch = []

        def current(node: Node) -> bool:
            return not node.ended and generation == self._generation

        def enter(node: Node) -> bytes | None:
            return node.path if current(node) else None

        def entries(node: Node, chunk: DirEntries) -> None:
            for entry in chunk:
                raw = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                mask = IN_MOVED_TO
                if is_dir:
                    if not self.accepts_directory(raw):
                        continue
                    if raw not in node.children:
                        child = self._watch(node, raw)
                        if child is not None:
                            if child.polled is None or not announce:
                                walk.push(child)
                            else:
                                self._watches.listed(child, ())
                    if not subdirectories:
                        continue
                    mask |= IN_ISDIR
                if announce:
                    found.append((node.prefix + raw, mask))

        def turn(node: Node) -> Turn:
            yield from done(node)
            return current(node)

        def done(node: Node) -> Iterator[object]:
            batch = found[:]
            found.clear()
            return self._found(batch)

        def unreadable(node: Node, error: OSError) -> None:
            found.clear()  # gone already: its end of watch follows

        walk: Walk[Node] = Walk(start, enter, entries, turn, done, unreadable)
        return walk.run()

    def _found(self, found: Batch) -> Iterator[object]:
        """Announce what a reading found, then let the reactor run (and the writer drain)."""
        if found:
            self._deliver(found, self._clock.seconds())
        yield None
        waiting = self._room()
        if waiting is not None:
            yield waiting

