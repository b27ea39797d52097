"""
The fanotify system calls, through C{ctypes}: the seam of L{dirobserver.sources.fanotify}.

Four calls are needed: C{fanotify_init} (a notification group that reports
each event with the file handle of its directory and the entry's name,
C{FAN_REPORT_DFID_NAME}, Linux 5.9), C{fanotify_mark} (one filesystem mark
covers every directory of a filesystem, C{CAP_SYS_ADMIN}),
C{name_to_handle_at} (the handle of a directory, to recognise its events)
and C{open_by_handle_at} (the way back, from a handle an event carries to
the directory's path: C{CAP_DAC_READ_SEARCH}).
The layouts of the records the kernel writes are here too, so the parsing in
L{dirobserver.sources.fanotify} and its tests share one definition.

The event bits of fanotify are inotify's (C{FAN_CREATE} is C{IN_CREATE},
C{FAN_ONDIR} is C{IN_ISDIR}, C{FAN_Q_OVERFLOW} is C{IN_Q_OVERFLOW}...): the
kernel defines both from the same C{FS_*} constants, so a mask read from
fanotify is already in the vocabulary of L{dirobserver.sources.masks}.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct

from dirobserver.sources.masks import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
)

# fanotify_init flags (<linux/fanotify.h>)
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_UNLIMITED_QUEUE = 0x00000010
FAN_REPORT_FID = 0x00000200
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

# fanotify_mark flags
FAN_MARK_ADD = 0x00000001
FAN_MARK_REMOVE = 0x00000002
FAN_MARK_FILESYSTEM = 0x00000100

# event bits: the same values as inotify's (see the module docstring)
FAN_CREATE = IN_CREATE
FAN_MOVED_TO = IN_MOVED_TO
FAN_MOVED_FROM = IN_MOVED_FROM
FAN_DELETE = IN_DELETE
FAN_CLOSE_WRITE = IN_CLOSE_WRITE
FAN_DELETE_SELF = IN_DELETE_SELF
FAN_MOVE_SELF = IN_MOVE_SELF
FAN_Q_OVERFLOW = 0x00004000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000

#: The descriptor of an event that carries none (every event of a group
#: that reports file handles, and the overflow event).
FAN_NOFD = -1

#: Version of the event records this layout describes.
FANOTIFY_METADATA_VERSION = 3

# info record types
FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3

#: struct fanotify_event_metadata: event_len, vers, reserved, metadata_len,
#: mask (u64, 8-aligned), fd, pid.
METADATA = struct.Struct("=IBBHQii")
#: struct fanotify_event_info_header: info_type, pad, len.
INFO_HEADER = struct.Struct("=BBH")
#: __kernel_fsid_t then struct file_handle's head: handle_bytes, handle_type.
FID_HEAD = struct.Struct("=8sIi")

#: name_to_handle_at follows a final link, as inotify_add_watch does.
_AT_SYMLINK_FOLLOW = 0x400
#: MAX_HANDLE_SZ of the kernel.
_MAX_HANDLE_SZ = 128
#: A key's fsid and handle type, before the handle itself (see L{handle_key}).
_KEY_HEAD = 12


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * _MAX_HANDLE_SZ),
    ]


class FanotifyUnavailable(OSError):
    """fanotify cannot be had here; C{reason} says why in a few words."""

    @property
    def reason(self) -> str:
        """Why, for a one-line error naming the section."""
        if self.errno == errno.EPERM:
            return ("a fanotify filesystem mark needs CAP_SYS_ADMIN (run as root; twistd --uid "
                    "drops privileges after the mark is made)")
        if self.errno == errno.EINVAL and self.filename is not None:
            return f"the kernel refused the filesystem mark ({self.strerror})"
        if self.errno == errno.EINVAL:
            return "this kernel has no fanotify FAN_REPORT_DFID_NAME (Linux 5.9 or later needed)"
        if self.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.ENODEV):
            return f"its filesystem gives no file handles to fanotify ({self.strerror})"
        if self.errno == errno.ENOSYS:
            return "this kernel has no fanotify"
        return f"fanotify refused it ({self.strerror})"


def handle_key(fsid: bytes, handle_type: int, f_handle: bytes) -> bytes:
    """One directory's key: its filesystem's id, and its handle (as fanotify reports them)."""
    return fsid + struct.pack("=i", handle_type) + f_handle


class LibcFanotify:
    """The fanotify system calls, through C{ctypes}."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64,
                                       ctypes.c_int, ctypes.c_char_p]
        libc.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p,
                                           ctypes.POINTER(_FileHandle),
                                           ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]
        self._libc = libc
        #: the fsid of each device (st_dev) met: one statvfs per filesystem,
        #: not one per directory of a tree
        self._fsids: dict[int, bytes] = {}

    def init(self) -> int:
        """A new notification group reporting directory handles and names."""
        flags = FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_NONBLOCK | FAN_CLOEXEC
        fd = self._libc.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise FanotifyUnavailable(code, os.strerror(code))
        return fd

    def mark_filesystem(self, fd: int, path: bytes, mask: int, remove: bool = False) -> None:
        """Add (or remove) C{mask} on the filesystem that holds C{path}."""
        flags = (FAN_MARK_REMOVE if remove else FAN_MARK_ADD) | FAN_MARK_FILESYSTEM
        if self._libc.fanotify_mark(fd, flags, mask, -100, path) < 0:  # AT_FDCWD
            code = ctypes.get_errno()
            raise FanotifyUnavailable(code, os.strerror(code), path)

    def handle_of(self, path: bytes, device: int | None = None) -> bytes:
        """
        The key of directory C{path} as its events will carry it
        (L{handle_key}), following a final symbolic link as inotify does.

        @param device: its C{st_dev}, when the caller has it (its
            filesystem's id is then looked up once per filesystem).
        """
        handle = _FileHandle()
        handle.handle_bytes = _MAX_HANDLE_SZ
        mount_id = ctypes.c_int()
        if self._libc.name_to_handle_at(-100, path, ctypes.byref(handle),
                                        ctypes.byref(mount_id), _AT_SYMLINK_FOLLOW) < 0:
            code = ctypes.get_errno()
            raise FanotifyUnavailable(code, os.strerror(code), path)
        # statvfs's f_fsid is the kernel's two 32-bit words, the first in the
        # low half (glibc): packed little-endian on this ABI it is the bytes
        # of __kernel_fsid_t that events carry.
        fsid = self._fsids.get(device) if device is not None else None
        if fsid is None:
            fsid = struct.pack("=Q", os.statvfs(path).f_fsid & 0xFFFFFFFFFFFFFFFF)
            if device is not None:
                self._fsids[device] = fsid
        return handle_key(fsid, handle.handle_type, bytes(handle.f_handle[:handle.handle_bytes]))

    def path_of(self, mount: int, key: bytes) -> bytes:
        """
        The path of the directory whose key (L{handle_key}) is C{key}, now:
        opened by its handle (C{O_PATH}, nothing is read) on the filesystem
        of descriptor C{mount}, then named by C{/proc/self/fd}.

        @raise OSError: C{EPERM} without C{CAP_DAC_READ_SEARCH}; C{ESTALE}
            for a directory deleted (its handle leads nowhere any more).
        """
        f_handle = key[_KEY_HEAD:]
        handle = _FileHandle()
        handle.handle_bytes = len(f_handle)
        handle.handle_type = struct.unpack_from("=i", key, 8)[0]
        ctypes.memmove(handle.f_handle, f_handle, len(f_handle))
        fd = self._libc.open_by_handle_at(mount, ctypes.byref(handle), os.O_PATH | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        try:
            path = os.readlink(b"/proc/self/fd/%d" % fd)
            # A directory removed but still held open by someone opens,
            # and is named "... (deleted)": it is gone all the same.
            if path.endswith(b" (deleted)") and os.fstat(fd).st_nlink == 0:
                raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
            return path
        finally:
            os.close(fd)


#: The process's libc, loaded once.
LIBC_FANOTIFY = LibcFanotify()
