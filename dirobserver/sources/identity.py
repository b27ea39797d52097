"""
Which directory a path leads to: its device and inode.

A watch follows an inode, not a name: a directory renamed away keeps its
watch, and another directory may then appear under the configured name.
Sources and monitors compare identities to tell one directory from another
under the same path.
"""

from __future__ import annotations

import errno
import os
import stat

from dirobserver.sources.interface import WatchError

#: What a path leads to: C{(st_dev, st_ino)}.
Identity = tuple[int, int]


def identity(path: str | bytes) -> Identity | None:
    """What C{path} leads to now (links followed); None if nothing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def directory_identity(path: bytes) -> Identity:
    """
    What directory C{path} leads to, as a watch would see it: it must be a
    directory that can be read.

    @raise WatchError: it is not (C{errno} says why).
    """
    try:
        info = os.stat(path)
    except OSError as e:
        raise WatchError(e.errno, e.strerror, path) from None
    if not stat.S_ISDIR(info.st_mode):
        raise WatchError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    if not os.access(path, os.R_OK | os.X_OK):
        raise WatchError(errno.EACCES, os.strerror(errno.EACCES), path)
    return info.st_dev, info.st_ino
