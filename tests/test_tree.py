"""
L{dirobserver.sources.tree.DirectoryTree} on real directories, with a recording
stand-in for the inotify watcher and the time of its walks and poller
driven by a Clock: what is watched, polled or dropped, and what a new
sub-directory's reading delivers.
"""

from __future__ import annotations

import os

from dirobserver.config import settings as config
from dirobserver.config.settings import WATCH_POLL
from dirobserver.sources import (
    tree as tree_module,
    tree_watches as watches_module,
)
from dirobserver.sources.identity import identity
from dirobserver.sources.masks import IN_CREATE, IN_ISDIR, IN_MOVED_TO, WATCH_MASK
from dirobserver.sources.polling import Poller
from dirobserver.sources.tree import DirectoryTree, TreeContext
from tests.kit.cases import ClockedDirectoryCase


class RecordingWatcher:
    """Stands in for the inotify watcher: hands out watch numbers, keeps the watches."""

    def __init__(self) -> None:
        self.watches: dict[int, bytes] = {}
        self._next = 1

    def add(self, path: bytes, sink, mask: int) -> int:
        wd, self._next = self._next, self._next + 1
        self.watches[wd] = path
        return wd

    def remove(self, wd: int, sink) -> None:
        self.watches.pop(wd, None)

    def paths(self, root: str) -> set[str]:
        return {os.path.relpath(os.fsdecode(p), root) for p in self.watches.values()}


class TreeTests(ClockedDirectoryCase):
    def setUp(self) -> None:
        super().setUp()
        self.delivered: list[tuple[bytes, int]] = []
        self.watcher = RecordingWatcher()
        self.poller: Poller | None = None

    def make(self, **keys: str) -> DirectoryTree:
        text = ("[common]\nredis_server=h\nredis_port=1\n[s:common]\nactive=true\nqueue=q\n"
                f"directory={self.root}\nrecursive=true\n"
                + "".join(f"{key}={value}\n" for key, value in keys.items()))
        section = config.parse(text, "t.ini").sections[0]
        tree = DirectoryTree(TreeContext(section, WATCH_MASK, self._deliver, lambda: None, self.clock,
                                         self.cooperator, self._poller))
        self.addCleanup(tree.clear)
        return tree

    def _poller(self) -> Poller:
        if self.poller is None:
            self.poller = Poller(self.clock, self.cooperator, 1.0)
            self.addCleanup(self.poller.close)
        return self.poller

    def _deliver(self, batch, read_time) -> None:
        self.delivered += batch

    def mkdirs(self, *paths: str) -> None:
        for path in paths:
            os.makedirs(os.path.join(self.root, path))

    def test_the_top_s_sub_directories_are_watched_at_once_not_announced(self):
        self.mkdirs("a/b/c", "d", ".hidden/e")
        with open(os.path.join(self.root, "a", "f"), "w"):
            pass
        tree = self.make(ignore_directories=r"^\.")
        tree.rooted(self.watcher, 99, polled=False, identity=identity(self.root))
        self.run_due()
        self.assertEqual(self.watcher.paths(self.root), {"a", "a/b", "a/b/c", "d"})
        self.assertEqual(self.delivered, [])
        self.assertEqual(tree.counts(), {"watched": 4, "polled": 0, "past_watch_limit": 0})

    def test_a_new_sub_directory_is_watched_then_read(self):
        tree = self.make()
        tree.rooted(self.watcher, 99, polled=False, identity=identity(self.root))
        self.run_due()
        self.mkdirs("new/deeper")
        for name in ("new/f", "new/deeper/g"):
            with open(os.path.join(self.root, name), "w"):
                pass
        tree.top_events([(b"new", IN_CREATE | IN_ISDIR)])
        self.assertEqual(self.watcher.paths(self.root), {"new"})  # watched before any reading
        self.run_due()
        self.assertEqual(self.watcher.paths(self.root), {"new", "new/deeper"})
        self.assertEqual(sorted(self.delivered), [(b"new/deeper/g", IN_MOVED_TO), (b"new/f", IN_MOVED_TO)])

    def test_a_listing_watches_again_a_directory_replaced_behind_its_back(self):
        """Events lost (a queue overflow): the listing finds another directory under a known name."""
        self.mkdirs("a")
        tree = self.make()
        tree.rooted(self.watcher, 99, polled=False, identity=identity(self.root))
        self.run_due()
        [old] = self.watcher.watches
        os.rename(os.path.join(self.root, "a"), os.path.join(self.root, "a.old"))
        self.mkdirs("a")
        self.assertTrue(tree.enter(b"a"))
        self.assertNotIn(old, self.watcher.watches)
        self.assertEqual(self.watcher.paths(self.root), {"a"})
        self.assertTrue(tree.enter(b"a"))  # the same one now: nothing changes
        self.assertEqual(len(self.watcher.watches), 1)
        self.assertFalse(tree.enter(b"missing/below"))

    def test_auto_polls_a_mount_point_of_a_network_filesystem_and_below(self):
        """A sub-directory on another device that statfs calls NFS is polled, with what is below it."""
        self.mkdirs("mnt/inside", "local")
        tree = self.make()
        mount = os.path.join(self.root, "mnt").encode()
        real_lstat = os.lstat

        class Info:
            def __init__(self, info, device) -> None:
                self.st_mode, self.st_ino, self.st_dev = info.st_mode, info.st_ino, device

        def lstat(path, *args, **kwargs):
            info = real_lstat(path, *args, **kwargs)
            return Info(info, 4242) if os.fsencode(path).startswith(mount) else info

        self.patch(tree_module.os, "lstat", lstat)
        self.patch(watches_module, "choose_mode", lambda mode, path: (WATCH_POLL, "on NFS (statfs type 0x6969)"))
        tree.rooted(self.watcher, 99, polled=False, identity=identity(self.root))
        self.run_due()
        self.assertEqual(self.watcher.paths(self.root), {"local"})
        self.assertEqual(tree.counts(), {"watched": 1, "polled": 2, "past_watch_limit": 0})
        self.assertEqual(len(self.poller), 2)
