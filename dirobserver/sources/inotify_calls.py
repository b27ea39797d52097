"""
The three inotify system calls, through C{ctypes}: the seam of L{dirobserver.sources.inotify}.

L{dirobserver.sources.inotify.InotifySource} makes every call through an
object of this shape (its C{calls}); a test passes another one (one that
refuses watches with C{ENOSPC}, say).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from dirobserver.sources.interface import WatchError


class LibcInotify:
    """The three inotify system calls, through C{ctypes}."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self._libc = libc

    def init(self) -> int:
        """A new non-blocking, close-on-exec inotify descriptor."""
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return fd

    def add_watch(self, fd: int, path: bytes, mask: int) -> int:
        """Watch C{path} for C{mask} (replacing the mask of an existing watch)."""
        wd = self._libc.inotify_add_watch(fd, path, mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise WatchError(code, os.strerror(code), path)
        return wd

    def rm_watch(self, fd: int, wd: int) -> None:
        """End watch C{wd}; the kernel may have ended it already (EINVAL)."""
        self._libc.inotify_rm_watch(fd, wd)


#: The process's libc, loaded once.
LIBC_INOTIFY = LibcInotify()
