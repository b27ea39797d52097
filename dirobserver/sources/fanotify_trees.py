"""
Which trees the events of a directory belong to, by its path: the routing
of a fanotify source's lazy trees.

A recursive section watched by fanotify registers its tree once, by the
path of its top (L{dirobserver.sources.fanotify.FanotifySource.add_tree}),
rather than each of its sub-directories.  The events of a directory nobody
registered are then routed by the directory's path, found from its handle
(L{dirobserver.sources.fanotify_paths.HandlePaths}): a directory under a
tree's top hands its events to that tree's sink, their names relative to
the top (C{b"a/b/f.csv"}, as a tree's nodes gave them).  The top's own
events go to the tree too (names without a directory): it learns there of
the sub-directories that appear and go.

The answers for one read are kept for that read (one look-up per directory
and read, not per event).  A directory renamed into, out of or within a
tree, or an ancestor of a top renamed, makes the paths remembered stale:
L{TreeRoutes.moved} forgets them all (simpler than finding those at or
under the old path, and cheap: each directory still active is opened once
more).  Renames elsewhere on the filesystem forget nothing.
"""

from __future__ import annotations

from dirobserver.sources.fanotify_paths import HandlePaths
from dirobserver.sources.interface import EventSink

#: Where one directory's events go: (tree id, prefix of their names).
Targets = list[tuple[int, bytes]]


class TreeRoutes:
    """The trees of one fanotify source, and the paths of their directories (see the module docstring)."""

    def __init__(self, paths: HandlePaths) -> None:
        self.paths = paths
        #: per tree id: its top (with a final "/"), its sink and mask
        self._trees: dict[int, tuple[bytes, EventSink, int]] = {}
        #: the targets of each key met in the current read
        self._memo: dict[bytes, Targets] = {}

    def __bool__(self) -> bool:
        """Whether some tree is registered (else nothing is resolved)."""
        return bool(self._trees)

    def __len__(self) -> int:
        return len(self._trees)

    def add(self, tree: int, top: bytes, sink: EventSink, mask: int) -> None:
        """Route the events below directory C{top} (a real path) to C{sink}, for C{mask}."""
        self._trees[tree] = (top.rstrip(b"/") + b"/", sink, mask)
        self._memo.clear()

    def remove(self, tree: int, sink: EventSink) -> bool:
        """Stop routing to tree C{tree} if C{sink} is its sink; whether it was."""
        known = self._trees.get(tree)
        if known is None or known[1] is not sink:
            return False
        del self._trees[tree]
        self._memo.clear()
        return True

    def sink(self, tree: int) -> tuple[EventSink, int] | None:
        """The sink and mask of tree C{tree} (None: removed since)."""
        known = self._trees.get(tree)
        return None if known is None else (known[1], known[2])

    def sinks(self) -> list[EventSink]:
        """Every tree's sink."""
        return [sink for _top, sink, _mask in self._trees.values()]

    def new_read(self) -> None:
        """A new read begins: what was found for the last one may have changed."""
        self._memo.clear()

    def targets(self, key: bytes) -> Targets:
        """The trees the events of directory C{key} go to, and the prefix of their names."""
        found = self._memo.get(key)
        if found is None:
            found = []
            path = self.paths.path(key)
            if path is not None:
                below = path.rstrip(b"/") + b"/"
                for tree, (top, _sink, _mask) in self._trees.items():
                    if below.startswith(top):
                        found.append((tree, below[len(top):]))
            self._memo[key] = found
        return found

    def moved(self, parent: bytes, name: bytes) -> None:
        """Directory C{name} was moved from or to directory C{parent} (its key): forget what it makes stale."""
        path = self.paths.path(parent)
        if path is not None and self._touches(path.rstrip(b"/") + b"/" + name):
            self.forget_all()

    def _touches(self, path: bytes) -> bool:
        """Whether C{path} is at or under a tree's top, or above one."""
        below = path + b"/"
        return any(below.startswith(top) or top.startswith(below) for top, _s, _m in self._trees.values())

    def forget_all(self) -> None:
        """Every path remembered may be stale."""
        self.paths.forget_all()
        self._memo.clear()
