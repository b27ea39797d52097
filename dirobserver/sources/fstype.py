"""
Which filesystem a directory is on, and whether inotify can be trusted there.

inotify reports what the local kernel does to its own inodes.  On a network
filesystem (NFS, CIFS/SMB, 9p, Ceph, AFS...) or a FUSE mount (sshfs,
GlusterFS, s3fs...) a file written by another host, or by the FUSE daemon
behind the kernel's back, gives no event at all: the directory looks quiet
while files pile up.  C{watch_mode = auto} therefore polls such directories.

The filesystem is named by the magic number C{statfs(2)} returns in
C{f_type}.  L{remote_kind} is a pure function of that number (tests check
it against the magic numbers themselves); L{statfs_type} is the one
C{ctypes} call.  Standard library only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from dirobserver.config.settings import WATCH_AUTO, WATCH_INOTIFY, WATCH_POLL

#: Filesystems whose changes made elsewhere inotify cannot see: their
#: C{statfs} magic number, and their name for the log line.
REMOTE_MAGIC: dict[int, str] = {
    0x6969: "NFS",
    0x517B: "SMB",
    0xFF534D42: "CIFS",
    0xFE534D42: "SMB2",
    0x01021997: "9p",
    0x00C36400: "Ceph",
    # Every FUSE filesystem shares one number: GlusterFS's client, sshfs,
    # s3fs, rclone, and local ones (ntfs-3g) alike.
    0x65735546: "FUSE",
    0x5346414F: "AFS",
    0x6B414653: "AFS",
    0x73757245: "Coda",
    0x564C: "NCP",
    # Cluster filesystems: another node's writes are not local events either.
    0x7461636F: "OCFS2",
    0x01161970: "GFS2",
    0x0BD00BD0: "Lustre",
    0x47504653: "GPFS",
}


#: Common local filesystems, by name, for C{--check}'s lines only: every
#: filesystem that is not in L{REMOTE_MAGIC} is watched with inotify.
LOCAL_MAGIC: dict[int, str] = {
    0xEF53: "ext4",
    0x58465342: "XFS",
    0x9123683E: "Btrfs",
    0x2FC12FC1: "ZFS",
    0x01021994: "tmpfs",
    0x794C7630: "overlayfs",
    0xF15F: "eCryptfs",
    0x4D44: "FAT",
    0x5346544E: "NTFS",
    0xF2F52010: "F2FS",
}


def filesystem_name(magic: int) -> str:
    """A name for the filesystem of C{statfs} type C{magic} (its number when unnamed)."""
    magic &= 0xFFFFFFFF
    return REMOTE_MAGIC.get(magic) or LOCAL_MAGIC.get(magic) or f"statfs type {magic:#x}"


def remote_kind(magic: int) -> str | None:
    """
    The name of the filesystem of C{statfs} type C{magic} when inotify cannot
    see what other hosts or a FUSE daemon do there; None for a local one.
    """
    # f_type is a signed long: a 32-bit system shows 0xFF534D42 as negative.
    return REMOTE_MAGIC.get(magic & 0xFFFFFFFF)


class _Statfs:
    """C{statfs(2)} through C{ctypes}: only C{f_type}, the first field on Linux."""

    # Larger than struct statfs on every Linux architecture (120 bytes on
    # x86_64): the kernel fills the rest, which is not read.
    _SIZE = 256

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._statfs = libc.statfs
        self._statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]

    def type_of(self, path: bytes) -> int:
        buffer = ctypes.create_string_buffer(self._SIZE)
        if self._statfs(path, buffer) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return ctypes.c_long.from_buffer(buffer).value


_STATFS: _Statfs | None = None


def statfs_type(path: str | bytes) -> int:
    """
    The C{f_type} magic number of the filesystem holding C{path}.

    @raise OSError: C{statfs} failed (the path does not exist, say).
    """
    global _STATFS
    if _STATFS is None:
        _STATFS = _Statfs()
    return _STATFS.type_of(os.fsencode(path))


def choose_mode(watch_mode: str, path: str | bytes) -> tuple[str, str | None]:
    """
    How to watch directory C{path} for a section whose C{watch_mode} is
    given: L{WATCH_INOTIFY} or L{WATCH_POLL} (or L{WATCH_FANOTIFY} when
    asked for: whether fanotify can be had, and C{auto}'s use of it for
    trees, are L{dirobserver.sources.fanotify_choice}'s).

    @return: the mode, and for C{auto} on a remote filesystem why it polls
        (the filesystem's name and magic number), else None.
    """
    if watch_mode != WATCH_AUTO:
        return watch_mode, None
    try:
        magic = statfs_type(path)
    except OSError:
        # Cannot tell (the directory is missing, say): its watch fails and is
        # tried again, and the choice is made again then.
        return WATCH_INOTIFY, None
    kind = remote_kind(magic)
    if kind is None:
        return WATCH_INOTIFY, None
    return WATCH_POLL, f"on {kind} (statfs type {magic & 0xFFFFFFFF:#x})"
