"""
The lazy fanotify tree on a real fanotify group (as root) on the
test's directory, read synchronously with C{drain()}: directories' paths
from the handles events carry (L{HandlePaths}: resolution, the bound,
forgetting), a source routing a tree's events by path
(L{FanotifySource.add_tree}): names relative to the top, nothing per
directory, renames and moves in followed, the outside dropped; and a
L{DirectoryTree} that goes lazy with such a source.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from dirobserver.config import settings as config
from dirobserver.sources import fanotify_calls as calls
from dirobserver.sources.fanotify import FanotifySource
from dirobserver.sources.fanotify_choice import open_group
from dirobserver.sources.fanotify_paths import HandlePaths, mount_root
from dirobserver.sources.identity import identity
from dirobserver.sources.masks import IN_CREATE, IN_DELETE, IN_ISDIR, IN_MOVED_TO, WATCH_MASK
from dirobserver.sources.tree import DirectoryTree, TreeContext
from tests.kit.cases import ClockedDirectoryCase
from tests.test_fanotify import Sink, root_only

pytestmark = root_only

MASK = WATCH_MASK | IN_DELETE


def paths_for(directory: Path, bound: int = 100) -> HandlePaths:
    made = HandlePaths(bound=bound)
    made.open_mount(os.fsencode(directory))
    return made


def key_of(directory: Path) -> bytes:
    return calls.LIBC_FANOTIFY.handle_of(os.fsencode(directory))


def test_a_handle_leads_back_to_its_directory_and_a_deleted_one_nowhere(tmp_path):
    """The path of a directory by its key, now (after a rename: the new one); deleted: None."""
    paths = paths_for(tmp_path)
    try:
        assert paths.problem() is None
        (tmp_path / "a" / "b").mkdir(parents=True)
        key = key_of(tmp_path / "a" / "b")
        assert paths.path(key) == os.fsencode(tmp_path / "a" / "b")
        os.rename(tmp_path / "a", tmp_path / "z")
        assert paths.path(key) == os.fsencode(tmp_path / "a" / "b")  # remembered: stale
        paths.forget_all()
        assert paths.path(key) == os.fsencode(tmp_path / "z" / "b")
        gone = key_of(tmp_path / "z" / "b")
        (tmp_path / "z" / "b").rmdir()
        paths.forget_all()
        assert paths.path(gone) is None
        assert paths.resolved == 3 and paths.cleared == 2
    finally:
        paths.close()


def test_the_table_keeps_the_most_recently_used_handles(tmp_path):
    """Past its bound the least recently used answer is forgotten (and found again when asked)."""
    paths = paths_for(tmp_path, bound=2)
    try:
        keys = []
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
            keys.append(key_of(tmp_path / name))
        paths.path(keys[0])
        paths.path(keys[1])
        paths.path(keys[0])  # used again: b is now the oldest
        paths.path(keys[2])
        assert len(paths) == 2
        resolved = paths.resolved
        paths.path(keys[0])
        assert paths.resolved == resolved  # still there
        assert paths.path(keys[1]) == os.fsencode(tmp_path / "b")
        assert paths.resolved == resolved + 1  # had to be opened again
    finally:
        paths.close()


def test_without_cap_dac_read_search_the_problem_is_said():
    """C{open_by_handle_at} refused (EPERM, as after twistd --uid): the tree falls back, saying why."""

    class Refused(calls.LibcFanotify):
        def __init__(self) -> None:
            """The process's libc, loaded already (finding it again starts a process)."""
            self.__dict__.update(calls.LIBC_FANOTIFY.__dict__)

        def path_of(self, mount: int, key: bytes) -> bytes:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    paths = HandlePaths(Refused())
    paths.open_mount(b"/dev/shm")
    try:
        why = paths.problem()
        assert why is not None and "CAP_DAC_READ_SEARCH" in why
    finally:
        paths.close()
    assert HandlePaths().problem() is not None  # no descriptor at all


@pytest.fixture
def source(tmp_path: Path):
    descriptor = open_group([os.fsencode(tmp_path)], MASK)
    made = FanotifySource(reactor, descriptor, devices={os.stat(tmp_path).st_dev},
                          paths=paths_for(tmp_path))
    yield made
    made.close()


def test_a_tree_gets_its_directories_events_relative_to_its_top_with_nothing_per_directory(
        tmp_path, source):
    """
    Events at any depth reach the tree's sink as C{b"a/b/f"} (the top's
    too); a sibling's do not; nothing is registered per directory.
    """
    top, sibling = tmp_path / "top", tmp_path / "sibling"
    (top / "a" / "b").mkdir(parents=True)
    sibling.mkdir()
    source.drain()
    tree, top_sink = Sink(), Sink()
    source.add(os.fsencode(top), top_sink, MASK)
    source.add_tree(os.fsencode(top), tree, MASK)
    (top / "f").write_bytes(b"x")
    (top / "a" / "f").write_bytes(b"x")
    (top / "a" / "b" / "f").write_bytes(b"x")
    (top / "a" / "b" / "new").mkdir()
    (top / "a" / "b" / "new" / "g").write_bytes(b"x")
    (sibling / "no").write_bytes(b"x")
    source.drain()
    assert top_sink.events == [(b"f", IN_CREATE)]
    assert tree.events == [(b"f", IN_CREATE), (b"a/f", IN_CREATE), (b"a/b/f", IN_CREATE),
                           (b"a/b/new", IN_CREATE | IN_ISDIR), (b"a/b/new/g", IN_CREATE)]
    assert source.watch_count() == 1  # the top's own
    # The mark is the whole filesystem's: other processes' directories
    # (another test's, in parallel) may be remembered too; look at ours.
    ours = sorted(path for path in source.cached_paths() if path.startswith(os.fsencode(tmp_path)))
    assert ours == sorted(os.fsencode(d) for d in (top, top / "a", top / "a" / "b", top / "a" / "b" / "new",
                                                   sibling))  # top (its own events), a, a/b, a/b/new, sibling


def test_a_directory_renamed_within_the_tree_is_followed_under_its_new_name(tmp_path, source):
    """The rename forgets the paths remembered: a file made afterwards has the new name."""
    top = tmp_path / "top"
    (top / "a" / "deep").mkdir(parents=True)
    source.drain()
    tree = Sink()
    source.add_tree(os.fsencode(top), tree, MASK)
    (top / "a" / "deep" / "before").write_bytes(b"x")
    source.drain()
    os.rename(top / "a", top / "z")
    (top / "z" / "deep" / "after").write_bytes(b"x")
    source.drain()
    assert tree.events == [(b"a/deep/before", IN_CREATE), (b"z", IN_MOVED_TO | IN_ISDIR),
                           (b"z/deep/after", IN_CREATE)]


def test_a_directory_known_outside_then_moved_in_is_routed_to_the_tree(tmp_path, source):
    """A directory remembered as outside the tree is found inside once moved in; moved out, it is dropped."""
    top, staging = tmp_path / "top", tmp_path / "staging"
    top.mkdir()
    (staging / "batch").mkdir(parents=True)
    tree = Sink()
    source.add_tree(os.fsencode(top), tree, MASK)
    (staging / "batch" / "early").write_bytes(b"x")
    source.drain()
    assert tree.events == []
    shutil.move(staging / "batch", top / "batch")
    (top / "batch" / "late").write_bytes(b"x")
    source.drain()
    os.rename(top / "batch", staging / "back")
    (staging / "back" / "gone").write_bytes(b"x")
    source.drain()
    assert tree.events == [(b"batch", IN_MOVED_TO | IN_ISDIR), (b"batch/late", IN_CREATE)]
    assert source.tree_problem(os.fsencode(top)) is None


def test_a_tree_removed_gets_nothing_more(tmp_path, source):
    """C{remove_tree}: no more events, and nothing is remembered once no tree is left."""
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    source.drain()
    tree = Sink()
    handle = source.add_tree(os.fsencode(top), tree, MASK)
    (top / "a" / "f").write_bytes(b"x")
    source.drain()
    source.remove_tree(handle, tree)
    (top / "a" / "g").write_bytes(b"x")
    source.drain()
    assert tree.events == [(b"a/f", IN_CREATE)]
    assert source.cached_directories() == 0


def test_moved_to_is_the_name_of_the_move(tmp_path, source):
    """A file moved in below the top arrives as C{IN_MOVED_TO} under its relative name."""
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    (tmp_path / "f").write_bytes(b"x")
    source.drain()
    tree = Sink()
    source.add_tree(os.fsencode(top), tree, MASK)
    os.rename(tmp_path / "f", top / "a" / "f")
    source.drain()
    assert tree.events == [(b"a/f", IN_MOVED_TO)]


class LazyDirectoryTreeTests(ClockedDirectoryCase):
    """
    A L{DirectoryTree} given a real fanotify source (on the temporary
    directory's filesystem) goes lazy: no node and no registration per
    directory; what appears is read and announced; ignored directories'
    events are dropped; a sub-directory that goes is said.
    """

    def setUp(self) -> None:
        super().setUp()
        descriptor = open_group([os.fsencode(self.root)], MASK)
        self.source = FanotifySource(reactor, descriptor, devices={os.stat(self.root).st_dev},
                                     paths=paths_for(Path(self.root)))
        self.addCleanup(self.source.close)
        self.delivered: list[tuple[bytes, int]] = []
        text = ("[common]\nredis_server=h\nredis_port=1\n[s:common]\nactive=true\nqueue=q\n"
                f"directory={self.root}\nrecursive=true\nignore_directories=^\\.\n")
        section = config.parse(text, "t.ini").sections[0]
        self.tree = DirectoryTree(TreeContext(section, WATCH_MASK, self._deliver, lambda: None, self.clock,
                                              self.cooperator, lambda: None))  # type: ignore[arg-type]
        self.addCleanup(self.tree.clear)

    def _deliver(self, batch, read_time) -> None:
        self.delivered += batch

    def test_what_appears_is_read_and_ignored_directories_are_dropped(self):
        root = Path(self.root)
        (root / "old" / "deep").mkdir(parents=True)
        self.source.drain()
        self.tree.rooted(self.source, 0, polled=False, identity=identity(self.root))
        self.run_due()
        self.assertTrue(self.tree.enter(b"old/deep"))
        (root / "old" / "deep" / "f").write_bytes(b"x")
        (root / "new" / "deeper").mkdir(parents=True)
        (root / "new" / "deeper" / "g").write_bytes(b"x")
        (root / ".hidden" / "in").mkdir(parents=True)
        (root / ".hidden" / "in" / "h").write_bytes(b"x")
        self.source.drain()
        self.run_due()
        names = [name for name, _mask in self.delivered]
        self.assertIn(b"old/deep/f", names)
        # By its own event: a created directory is not read (that would announce it twice).
        self.assertEqual(names.count(b"new/deeper/g"), 1)
        self.assertFalse([name for name in names if b".hidden" in name])
        self.assertEqual((self.tree.subdirectories, self.source.watch_count()), (0, 0))

    def test_a_directory_moved_in_is_read_for_what_it_brought(self):
        self.tree.rooted(self.source, 0, polled=False, identity=identity(self.root))
        self.run_due()
        staging = Path(tempfile.mkdtemp(prefix="dirobserver-staging-", dir=os.path.dirname(self.root)))
        self.addCleanup(shutil.rmtree, staging, True)
        (staging / "batch" / "deeper").mkdir(parents=True)
        (staging / "batch" / "deeper" / "f").write_bytes(b"x")
        self.source.drain()
        os.rename(staging / "batch", Path(self.root) / "batch")
        self.source.drain()
        self.run_due()
        self.assertEqual(self.delivered, [(b"batch/deeper/f", IN_MOVED_TO)])

    def test_a_sub_directory_that_goes_is_said_and_the_tree_cleared_gets_nothing(self):
        root = Path(self.root)
        (root / "a" / "b").mkdir(parents=True)
        self.source.drain()
        self.tree.rooted(self.source, 0, polled=False, identity=identity(self.root))
        self.run_due()
        said: list[dict] = []
        globalLogPublisher.addObserver(said.append)
        self.addCleanup(globalLogPublisher.removeObserver, said.append)
        (root / "a" / "b").rmdir()
        self.source.drain()
        self.assertTrue(any("is gone" in event.get("log_format", "")
                            and event.get("path", "").endswith("/a/b") for event in said))
        self.assertEqual(self.delivered, [])  # the section did not ask for deletions
        self.tree.clear()
        (root / "a" / "late").write_bytes(b"x")
        self.source.drain()
        self.run_due()
        self.assertEqual(self.delivered, [])


@pytest.mark.process
def test_a_tree_reached_through_a_bind_mount_is_routed_by_the_bind_s_paths(tmp_path):
    """
    A bind mount shows a part of a filesystem elsewhere, with the same
    device: handles are opened on the bind's own root (found by mount id),
    so the paths they lead to are the bind's, and its tree gets its events.
    """
    disk = tmp_path / "fs"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(disk)], check=True)
    try:
        # The bind inside the filesystem it shows a part of: the same device
        # all the way up to the filesystem's root.
        bind = disk / "view"
        bind.mkdir()
        (disk / "part" / "top" / "a").mkdir(parents=True)
        subprocess.run(["mount", "--bind", str(disk / "part"), str(bind)], check=True)
        try:
            assert mount_root(os.fsencode(bind / "top" / "a")) == os.fsencode(bind)
            descriptor = open_group([os.fsencode(bind / "top")], MASK)
            source = FanotifySource(reactor, descriptor, paths=paths_for(bind / "top"))
            try:
                assert source.tree_problem(os.fsencode(bind / "top")) is None
                tree = Sink()
                source.add_tree(os.fsencode(bind / "top"), tree, MASK)
                (bind / "top" / "a" / "f").write_bytes(b"x")
                source.drain()
                assert tree.events == [(b"a/f", IN_CREATE)]
                # The filesystem's own mount is not the one handles are opened on.
                assert source.tree_problem(os.fsencode(disk / "part" / "top")) is not None
            finally:
                source.close()
        finally:
            subprocess.run(["umount", str(bind)], check=False)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
