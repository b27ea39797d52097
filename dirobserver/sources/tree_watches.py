"""
How each directory of a tree is watched: by inotify, or by the poller.

A L{dirobserver.sources.tree.DirectoryTree} holds the structure of a recursive
section (its nodes, what their events mean, the readings of new
sub-directories); L{TreeWatches} gets each node its watch, and is the one
place that decides between the section's two event sources:

 - inotify (the service's L{dirobserver.sources.inotify.InotifySource}) by default;
 - the section's L{dirobserver.sources.polling.Poller} for every directory of a
   polled section, and, with C{watch_mode = auto}, for a mount point of a
   network or FUSE filesystem inside the tree and everything below it
   (L{dirobserver.sources.fstype});
 - the poller too, for want of inotify watches: past
   C{fs.inotify.max_user_watches} (C{ENOSPC}) a sub-directory is polled
   rather than silently unwatched.  One line says so for the whole episode;
   after each round of scans (L{retry}) those directories get inotify
   watches again as soon as some are available, and are scanned one last
   time for what came before their watch.

A node is anything with C{path}, C{device}, C{wd}, C{polled} and
C{poll_only} attributes that is also the sink of its watch.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from dirobserver.config.settings import WATCH_AUTO, WATCH_POLL, SectionSettings
from dirobserver.sources.fstype import choose_mode
from dirobserver.sources.interface import EventSource, WatchError
from dirobserver.sources.masks import WATCH_MASK
from dirobserver.sources.polling import Poller

#: Directories polled for want of watches that one round of scans tries to
#: watch again (thousands of watches at once would hold the reactor up).
RETRIES_PER_ROUND = 1000


class TreeWatches:
    """The watches of one section's directories (see the module docstring)."""

    _log = Logger()

    def __init__(self, section: SectionSettings, mask: int, poller: Callable[[], Poller]) -> None:
        """
        @param mask: what each directory is watched for (the section's).
        @param poller: the section's poller (made when first needed).
        """
        self.section = section
        self._section_mask = self.mask = mask
        self.poller = poller
        self.watcher: EventSource | None = None
        #: polled for want of inotify watches
        self._limited: dict[Any, None] = {}
        #: paths whose watch was refused (said once each)
        self._refused: set[bytes] = set()
        #: directories polled now (the top included)
        self.polled = 0

    def rooted(self, watcher: EventSource | None, polled: bool) -> None:
        """A new top: watched by C{watcher} (inotify), or C{polled}."""
        self.watcher = watcher
        # A polled section announces what its poller reports (see the
        # monitor): names gone are of no interest to it.
        self.mask = WATCH_MASK if polled else self._section_mask
        self.polled += polled

    def cleared(self, top_polled: bool) -> None:
        """The whole tree is dropped (its nodes were L{unwatch}ed)."""
        self.polled -= top_polled
        self._limited.clear()

    def counts(self, directories: int, top_polled: bool) -> dict[str, int]:
        """C{directories} sub-directories by how they are watched (see the metrics)."""
        polled = self.polled - top_polled
        limited = len(self._limited)
        return {"watched": directories - polled, "polled": polled - limited, "past_watch_limit": limited}

    # -- one directory -----------------------------------------------------------------

    def watch(self, node: Any, parent: Any) -> bool:
        """
        Give C{node}, a new sub-directory of C{parent}, its watch.

        @return: False when it can be neither watched nor polled (gone, or
            refused: said once).
        """
        node.poll_only = parent.poll_only or self._remote_mount(node, parent)
        limited = False
        if not node.poll_only and self.watcher is not None:
            try:
                node.wd = self.watcher.add(node.path, node, self.mask)
            except WatchError as e:
                if e.errno != errno.ENOSPC:
                    self._refused_once(node.path, e)
                    return False
                limited = True
        if node.wd is None:
            try:
                node.polled = self.poller().add(node.path, node, self.mask)
            except WatchError as e:
                self._refused_once(node.path, e)
                return False
            self.polled += 1
            if limited:
                self._limit_reached(node)
        self._refused.discard(node.path)
        return True

    def unwatch(self, node: Any) -> None:
        """End the watch of C{node} (one that ended already is let be)."""
        if node.wd is not None and self.watcher is not None:
            self.watcher.remove(node.wd, node)
        if node.polled is not None:
            self.poller().remove(node.polled, node)
            self.polled -= 1
        self._limited.pop(node, None)

    def listed(self, node: Any, names: Iterable[bytes]) -> None:
        """A reading of polled C{node} saw C{names}: its poller's previous scan."""
        if node.polled is not None:
            self.poller().listed(node.polled, names)

    def _remote_mount(self, node: Any, parent: Any) -> bool:
        """C{watch_mode = auto}: a mount point of a network or FUSE filesystem is polled."""
        if self.section.watch_mode != WATCH_AUTO or node.device == parent.device:
            return False
        mode, why = choose_mode(WATCH_AUTO, node.path)
        if mode != WATCH_POLL:
            return False
        self._log.info(
            "[{section}] {path} is {why}: polling it and everything below it every {interval:g} s",
            section=self.section.name, path=os.fsdecode(node.path), why=why,
            interval=self.section.poll_interval,
        )
        return True

    def _refused_once(self, path: bytes, error: WatchError) -> None:
        if error.errno in (errno.ENOENT, errno.ENOTDIR) or path in self._refused:
            return  # gone already: nothing to say
        self._refused.add(path)
        self._log.warn(
            "[{section}] Sub-directory {path} {reason}: its files are not announced until it "
            "can be watched (the next listing tries again)",
            section=self.section.name, path=os.fsdecode(path), reason=error.reason,
        )

    # -- the inotify watch limit --------------------------------------------------------

    def _limit_reached(self, node: Any) -> None:
        first = not self._limited
        self._limited[node] = None
        if first:
            self._log.warn(
                "[{section}] The inotify watch limit is reached (fs.inotify.max_user_watches = "
                "{limit}): sub-directories of {directory} that cannot be watched are polled every "
                "{interval:g} s until watches are available again; raise the limit with "
                "sysctl fs.inotify.max_user_watches=N",
                section=self.section.name, limit=_watch_limit(), directory=self.section.directory,
                interval=self.section.poll_interval,
            )

    def retry(self) -> None:
        """
        After a round of scans: watch the sub-directories polled for want
        of inotify watches, as long as watches can be had.  Each is scanned
        once more after its watch is set (what came before the watch).
        """
        if not self._limited or self.watcher is None:
            return
        for node in list(self._limited)[:RETRIES_PER_ROUND]:
            try:
                wd = self.watcher.add(node.path, node, self.mask)
            except WatchError as e:
                if e.errno == errno.ENOSPC:
                    return  # still at the limit
                continue  # gone: its scan says so
            node.wd = wd
            if node.polled is not None:
                self.poller().retire(node.polled)
                node.polled = None
                self.polled -= 1
            del self._limited[node]
        if not self._limited:
            self._log.info(
                "[{section}] inotify watches are available again: every sub-directory of "
                "{directory} is watched",
                section=self.section.name, directory=self.section.directory,
            )


def _watch_limit() -> str:
    """The value of C{fs.inotify.max_user_watches}, for the log line."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return f.read().strip()
    except OSError:
        return "unknown"
