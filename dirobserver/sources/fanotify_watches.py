"""
The directories registered one by one with a fanotify source: each
section's top, the watchdog's probe directory, and every sub-directory of
a tree that cannot be lazy (see L{dirobserver.sources.lazy_tree}).

A registration costs no kernel resource: the directory's handle
(C{name_to_handle_at}), recognised in the events it carries, and an entry
in a dict.  Its path is kept too: the parent's events name a registered
sub-directory that goes (C{FAN_MOVED_FROM}, C{FAN_DELETE}) by its path.
"""

from __future__ import annotations

import errno
import os
import stat

from dirobserver.sources.fanotify_calls import FanotifyUnavailable, LibcFanotify
from dirobserver.sources.interface import EventSink, WatchError
from dirobserver.sources.masks import IN_ONLYDIR


class Watch:
    """A directory some sinks asked for: its key, path and sinks (a tree may have one per directory: kept small)."""

    __slots__ = ("key", "path", "sinks")

    def __init__(self, key: bytes, path: bytes) -> None:
        self.key = key
        self.path = path
        self.sinks: list[tuple[EventSink, int]] = []


class DirectoryWatches:
    """
    The registered directories, by id, by key and by path (see the module
    docstring).

    @ivar by_id: each watch by its id.
    @ivar by_key: the id of each key (the look-up of every event).
    """

    def __init__(self, calls: LibcFanotify, devices: set[int] | None) -> None:
        """@param devices: the devices marked, if known (see L{add})."""
        self._calls = calls
        self._devices = devices
        self.by_id: dict[int, Watch] = {}
        self.by_key: dict[bytes, int] = {}
        self._by_path: dict[bytes, int] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self.by_id)

    def new_id(self) -> int:
        """An id no watch (nor tree) has: watches and trees share the numbering."""
        made = self._next
        self._next += 1
        return made

    def add(self, path: bytes, sink: EventSink, mask: int) -> int:
        """Register directory C{path} for C{sink} and C{mask}; its id."""
        try:
            info = os.stat(path)
            key = self._calls.handle_of(path, info.st_dev)
        except FanotifyUnavailable as e:
            raise WatchError(e.errno or errno.EIO, e.strerror, path) from None
        except OSError as e:
            raise WatchError(e.errno or errno.EIO, e.strerror, path) from None
        if not stat.S_ISDIR(info.st_mode):
            raise WatchError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        if self._devices is not None and info.st_dev not in self._devices:
            # No event of it would come.
            raise WatchError(errno.EXDEV, "on a filesystem the fanotify group has no mark on", path)
        wid = self.by_key.get(key)
        if wid is None:
            wid = self.new_id()
            self.by_id[wid] = Watch(key, path)
            self.by_key[key] = wid
        watch = self.by_id[wid]
        if watch.path != path:
            # The same directory under a new name (renamed, or a link): the
            # new name is the one its sub-directories' events follow.
            if self._by_path.get(watch.path) == wid:
                del self._by_path[watch.path]
            watch.path = path
        self._by_path[path] = wid
        watch.sinks.append((sink, mask & ~IN_ONLYDIR))
        return wid

    def remove(self, wid: int, sink: EventSink) -> None:
        """C{sink} asks no more for watch C{wid}: forgotten when nobody does."""
        watch = self.by_id.get(wid)
        if watch is None:
            return
        watch.sinks = [(s, m) for s, m in watch.sinks if s is not sink]
        if not watch.sinks:
            self.forget(wid)

    def forget(self, wid: int) -> Watch | None:
        """Forget watch C{wid}; it, if it was there."""
        watch = self.by_id.pop(wid, None)
        if watch is not None:
            if self.by_key.get(watch.key) == wid:
                del self.by_key[watch.key]
            if self._by_path.get(watch.path) == wid:
                del self._by_path[watch.path]
        return watch

    def child(self, wid: int, name: bytes) -> int | None:
        """The id of the registered sub-directory C{name} of watch C{wid}, if any."""
        return self._by_path.get(self.by_id[wid].path + b"/" + name)

    def still_there(self, wid: int) -> bool:
        """Whether watch C{wid}'s path still leads to its directory (a rename already followed)."""
        watch = self.by_id[wid]
        try:
            return self._calls.handle_of(watch.path) == watch.key
        except OSError:
            return False  # gone

    def sinks(self) -> list[EventSink]:
        """Every sink of every watch."""
        return [sink for watch in self.by_id.values() for sink, _mask in watch.sinks]

    def clear(self) -> None:
        """Forget every watch."""
        self.by_id.clear()
        self.by_key.clear()
        self._by_path.clear()
