"""
A recursive section watched by fanotify, at no cost per directory: the
lazy tree.

A fanotify filesystem mark reports every directory of the filesystem, new
ones included, so the tree registers nothing per directory: its top is
registered once with the source (L{FanotifySource.add_tree}), which routes
the events of every directory below it here by their path (see
L{dirobserver.sources.fanotify_trees}), names relative to the top as a
L{dirobserver.sources.tree.DirectoryTree}'s nodes give them.  The top's
own events come too: its monitor has them already, but the tree learns
there of sub-directories that appear and go.  What the tree still does:

 - drop the events of directories below one C{ignore_directories} refuses
   (the mark reports them too);
 - read a sub-directory moved in, and announce what it brought, as the
   eager tree does (a file made in it while it is read may be announced
   twice, as with the eager tree).

A sub-directory I{created} is not read: the mark was there before it, so
everything made in it has its own events, C{mkdir -p a/b && touch a/b/f}
included.  Reading it too would announce most of its first files twice
(the eager tree reads it because it had no watch on it until then).

Sub-directories on another filesystem (a mount point inside the tree) are
not followed: the mark is on the top's filesystem only (an eager tree
refuses them in one line, C{EXDEV}, or polls a network one with
C{watch_mode = auto}).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Protocol

from twisted.logger import Logger

from dirobserver.sources.interface import Batch, EventSink
from dirobserver.sources.masks import IN_DELETE, IN_ISDIR, IN_MOVED_FROM, IN_MOVED_TO
from dirobserver.sources.walk import DirEntries, Turn, Walk

_GONE = IN_MOVED_FROM | IN_DELETE


class TreeSource(Protocol):
    """What a lazy tree asks of its source (L{dirobserver.sources.fanotify.FanotifySource})."""

    def add_tree(self, top: bytes, sink: EventSink, mask: int) -> int:
        """Deliver the events below C{top} to C{sink}, names relative to C{top}."""

    def remove_tree(self, tree: int, sink: EventSink) -> None:
        """Stop delivering them."""


class LazyTree:
    """The sub-directories of one section, routed by a fanotify source (see the module docstring)."""

    _log = Logger()

    def __init__(self, section: str, top: bytes, mask: int, subdirectories: bool,
                 accepts: Callable[[bytes], bool], deliver: Callable[[Batch, float], None],
                 found: Callable[[Batch], Iterator[object]],
                 run: Callable[[Iterator[object]], None]) -> None:
        """
        @param section: the section's name, for the log.
        @param top: the section's directory.
        @param mask: what the section asks for.
        @param subdirectories: whether the section announces directories too.
        @param accepts: whether a sub-directory's name belongs to the tree.
        @param deliver: takes the events, names relative to the top.
        @param found: announces what a reading found, then lets the
            reactor (and the writer) breathe.
        @param run: runs a reading cooperatively.
        """
        self._section = section
        self._top = top
        #: what the section asks for; the source is asked for the
        #: sub-directories that go besides (said at debug level)
        self._wanted = mask
        self._mask = mask | _GONE
        self._subdirectories = subdirectories
        self._accepts = accepts
        self._deliver = deliver
        self._found = found
        self._run = run
        self._source: TreeSource | None = None
        self._handle: int | None = None
        #: bumped when the tree stops: readings under way stop too
        self._generation = 0

    def start(self, source: TreeSource) -> None:
        """Have C{source} route the events below the top here."""
        self.stop()
        self._source = source
        self._handle = source.add_tree(self._top, self, self._mask)

    def stop(self) -> None:
        """No more events, and the readings under way stop."""
        self._generation += 1
        if self._source is not None and self._handle is not None:
            self._source.remove_tree(self._handle, self)
        self._source = self._handle = None

    # -- EventSink ------------------------------------------------------------------

    def file_events(self, batch: Batch, read_time: float) -> None:
        """
        Events of the top and below it: sub-directories that appear are
        read, those that go are said; the events below the top in accepted
        directories are handed on (the top's are its monitor's already).
        """
        if self._handle is None:
            return
        accepted: dict[bytes, bool] = {b"": True}
        kept: Batch = []
        wanted = self._wanted
        for name, mask in batch:
            directory, _, leaf = name.rpartition(b"/")
            ok = accepted.get(directory)
            if ok is None:
                ok = accepted[directory] = all(self._accepts(part) for part in directory.split(b"/"))
            if not ok:
                continue
            if mask & IN_ISDIR and self._accepts(leaf):
                if mask & IN_MOVED_TO:
                    self._run(self._reading(name, self._generation))
                elif mask & _GONE:
                    self._log.debug("[{section}] {path} is gone (deleted or moved away): no more "
                                    "events of it", section=self._section,
                                    path=os.fsdecode(os.path.join(self._top, name)))
            if directory and mask & wanted:
                kept.append((name, mask))
        if kept:
            self._deliver(kept, read_time)

    def watch_ended(self, mask: int) -> None:
        """Never said of a tree: a sub-directory's end is an event of its parent's."""

    def events_lost(self) -> None:
        """The monitor, the sink of the top, hears of it and lists the tree."""

    # -- new sub-directories -----------------------------------------------------------

    def _reading(self, start: bytes, generation: int) -> Iterator[object]:
        """Announce what is in C{start} (relative to the top) and below it, as moved in."""
        top, subdirectories = self._top, self._subdirectories
        found: Batch = []

        def current() -> bool:
            return generation == self._generation

        def enter(relative: bytes) -> bytes | None:
            return os.path.join(top, relative) if current() else None

        def entries(relative: bytes, chunk: DirEntries) -> None:
            for entry in chunk:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                name, mask = relative + b"/" + entry.name, IN_MOVED_TO
                if is_dir:
                    if not self._accepts(entry.name):
                        continue
                    walk.push(name)
                    if not subdirectories:
                        continue
                    mask |= IN_ISDIR
                found.append((name, mask))

        def turn(relative: bytes) -> Turn:
            yield from done(relative)
            return current()

        def done(_relative: bytes) -> Iterator[object]:
            batch = found[:]
            found.clear()
            return self._found(batch)

        def unreadable(_relative: bytes, _error: OSError) -> None:
            found.clear()  # gone already

        walk: Walk[bytes] = Walk(start, enter, entries, turn, done, unreadable)
        return walk.run()
