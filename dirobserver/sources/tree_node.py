"""
The parts of a L{dirobserver.sources.tree.DirectoryTree}: a directory of
the tree (L{Node}, the sink of its watch), and what the tree is given by
its section's monitor (L{TreeContext}).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from dirobserver.config.settings import SectionSettings
from dirobserver.sources.interface import Batch
from dirobserver.sources.polling import Poller

if TYPE_CHECKING:
    from dirobserver.sources.tree import DirectoryTree


class Node:
    """A directory of the tree, and the sink of its watch."""

    __slots__ = ("tree", "parent", "name", "path", "prefix", "children", "wd", "polled",
                 "poll_only", "device", "inode", "ended")

    def __init__(self, tree: DirectoryTree, parent: Node | None, name: bytes, path: bytes,
                 prefix: bytes) -> None:
        self.tree = tree
        self.parent = parent
        self.name = name
        self.path = path
        #: what the names of its events are prefixed with (b"" at the top)
        self.prefix = prefix
        self.children: dict[bytes, Node] = {}
        #: its inotify watch, or its poller's handle (None: none of that kind)
        self.wd: int | None = None
        self.polled: int | None = None
        #: polled for good (a polled section, a network mount), not for
        #: want of inotify watches
        self.poll_only = False
        self.device = self.inode = 0
        self.ended = False

    @property
    def relative(self) -> bytes:
        """Its path relative to the top (b"" for the top)."""
        return self.prefix[:-1]

    def file_events(self, batch: Batch, read_time: float) -> None:
        """Entries appeared in the directory: the tree hands them on."""
        self.tree.node_events(self, batch, read_time)

    def watch_ended(self, mask: int) -> None:
        """The directory was deleted, moved or unmounted."""
        self.tree.node_ended(self)

    def events_lost(self) -> None:
        """The monitor, the sink of the top directory, hears of it for the whole tree."""


@dataclass(frozen=True)
class TreeContext:
    """
    What a L{DirectoryTree} is given by its section's monitor.

    @ivar section: the section's settings.
    @ivar mask: what each sub-directory is watched for (the section's).
    @ivar deliver: takes the events of the sub-directories, their names
        relative to the top (the monitor's event handling).
    @ivar room: None while the writer has room, else a Deferred that fires
        when it has (the reading of a new sub-directory waits).
    @ivar clock: stamps what a reading finds.
    @ivar cooperator: runs the readings (the service's own).
    @ivar poller: the section's poller (made when first needed).
    """

    section: SectionSettings
    mask: int
    deliver: Callable[[Batch, float], None]
    room: Callable[[], defer.Deferred | None]
    clock: IReactorTime
    cooperator: task.Cooperator
    poller: Callable[[], Poller]
