"""
From the handle an event carries to the path of its directory: how a
fanotify tree costs nothing per directory.

A filesystem mark reports the events of every directory of the filesystem,
each with the handle of its directory.  A recursive section need not
register each of its sub-directories to recognise theirs: the handle of a
directory nobody registered is opened (C{open_by_handle_at}, C{O_PATH}: a
name, nothing read) on a descriptor of the filesystem (the I{mount}: a
mount's root, opened before privileges are dropped), and named by
C{/proc/self/fd}.  Whether that path is under a section's top decides
where its events go (L{dirobserver.sources.fanotify}).

Resolving costs four system calls; L{HandlePaths} keeps the answers in a
bounded least-recently-used table (L{BOUND} entries: the handle's bytes
and the path's, about 250 bytes each, 25 MB at most), for directories
inside the trees and outside them alike, since the events of both keep
coming.  What makes an answer stale is said by L{forget_all}: the source
calls it when a directory is renamed in, out of or within a tree, or
when events were lost (an overflow).  A deleted directory needs nothing:
its handle is never reused, and a handle that leads nowhere any more
(C{ESTALE}) is remembered as leading nowhere, so its late events are
dropped at the price of one look-up.

C{open_by_handle_at} needs C{CAP_DAC_READ_SEARCH}, which a daemon started
as root keeps unless twistd drops privileges (C{--uid}); L{problem} says
so once, and the trees then register every directory as before.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict

from dirobserver.sources.fanotify_calls import LIBC_FANOTIFY, LibcFanotify

#: How many handles the table remembers.
BOUND = 100_000
#: A key's filesystem id: its first bytes (see fanotify_calls.handle_key).
_FSID = 8


def mount_root(path: bytes) -> bytes:
    """
    The root of the mount that holds directory C{path}: its highest
    ancestor in the same mount (by mount id: a bind mount has the device of
    the filesystem it shows a part of).
    """
    path = os.path.abspath(path)
    mount = _mount_id(path)
    while path != b"/":
        parent = os.path.dirname(path)
        if _mount_id(parent) != mount:
            break
        path = parent
    return path


def _mount_id(path: bytes) -> int:
    """The id of the mount C{path} is in (C{mnt_id} of a descriptor's fdinfo; -1: not said)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
            for line in info:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    return -1


class HandlePaths:
    """
    The paths of directories by the keys their events carry (see the
    module docstring).

    @ivar resolved: how many handles were opened (the table's misses).
    @ivar cleared: how many times the table was emptied.
    """

    def __init__(self, calls: LibcFanotify = LIBC_FANOTIFY, bound: int = BOUND) -> None:
        self._calls = calls
        self._bound = bound
        #: key -> path, or None for a handle that leads nowhere
        self._paths: OrderedDict[bytes, bytes | None] = OrderedDict()
        #: an open descriptor per filesystem id, and a key to probe with
        self._mounts: dict[bytes, int] = {}
        self._probe: bytes | None = None
        self._problem: str | None = None
        self._probed = False
        self.resolved = 0
        self.cleared = 0

    def __len__(self) -> int:
        """How many handles are remembered (the cached directories)."""
        return len(self._paths)

    def remembered(self) -> list[bytes]:
        """The paths remembered, oldest use first (those that lead nowhere left out)."""
        return [path for path in self._paths.values() if path is not None]

    def open_mount(self, path: bytes) -> None:
        """
        Keep a descriptor of the filesystem of directory C{path}, to open
        handles on (called while privileged, with the marks).
        """
        try:
            # The mount's root, not the section's directory: a directory
            # held open is not reported deleted until it is closed.  It is
            # also what problem() probes with: it does not go away.
            root = mount_root(path)
            key = self._calls.handle_of(root)
        except OSError:
            return  # gone meanwhile, or no handles (the mark said why)
        fsid = key[:_FSID]
        if fsid in self._mounts:
            return
        try:
            # Not O_PATH: open_by_handle_at refuses such a descriptor (EBADF).
            self._mounts[fsid] = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return  # gone meanwhile: problem() says so if no filesystem is left
        if self._probe is None:
            self._probe = key

    def problem(self) -> str | None:
        """
        Why handles cannot be opened (None: they can), found once by
        opening one: asked after twistd dropped privileges, if it did.
        """
        if not self._probed:
            self._probed = True
            if self._probe is None:
                self._problem = "no filesystem descriptor was opened at the start"
            else:
                try:
                    self._calls.path_of(self._mounts[self._probe[:_FSID]], self._probe)
                except OSError as e:
                    self._problem = (
                        "opening directories by their handles needs CAP_DAC_READ_SEARCH, which the "
                        "daemon no longer has (twistd --uid)" if e.errno == errno.EPERM
                        else f"directories cannot be opened by their handles ({e.strerror})")
        return self._problem

    def leads_to(self, directory: bytes) -> bool:
        """
        Whether the handle of C{directory} leads back to its real path: not
        where the filesystem's descriptor is another mount of it (a bind
        mount of a part of it, say), whose paths differ.
        """
        try:
            key = self._calls.handle_of(directory)
            mount = self._mounts[key[:_FSID]]
            return self._calls.path_of(mount, key) == os.path.realpath(directory)
        except (OSError, KeyError):
            return False

    def path(self, key: bytes) -> bytes | None:
        """The path of the directory of C{key}, None when it leads nowhere (deleted, unknown filesystem)."""
        paths = self._paths
        if key in paths:
            paths.move_to_end(key)
            return paths[key]
        found: bytes | None = None
        mount = self._mounts.get(key[:_FSID])
        if mount is not None:
            self.resolved += 1
            try:
                found = self._calls.path_of(mount, key)
            except OSError:
                found = None  # ESTALE: deleted; EPERM: see problem()
        paths[key] = found
        if len(paths) > self._bound:
            paths.popitem(last=False)
        return found

    def forget_all(self) -> None:
        """Every answer may be stale (a directory renamed, events lost): forget them."""
        if self._paths:
            self._paths.clear()
            self.cleared += 1

    def close(self) -> None:
        """Close the filesystem descriptors and forget everything."""
        self._paths.clear()
        for mount in self._mounts.values():
            os.close(mount)
        self._mounts.clear()
