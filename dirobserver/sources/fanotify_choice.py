"""
Which sections fanotify watches, and the one group that serves them.

A section is watched by fanotify when it asks for it (C{watch_mode =
fanotify}), or when it is a tree (C{recursive = true}) with C{watch_mode =
auto} on a local filesystem and fanotify can be had (one log line per such
section says which and why).  All of them share one fanotify group
(L{dirobserver.sources.fanotify.FanotifySource}), with one filesystem mark
per filesystem.

The group and its marks need C{CAP_SYS_ADMIN}: L{FanotifyGroup.open} runs in
the service's C{privilegedStartService}, which twistd calls before it drops
privileges (C{--uid}).  A section added by a reload afterwards can use the
group only if its filesystem is marked already (no new mark can be made
then); otherwise it is watched by inotify, and one line says so.  The
descriptors the lazy trees open directories' handles on (one per marked
filesystem, L{dirobserver.sources.fanotify_paths}) are opened with the marks.

An explicit C{watch_mode = fanotify} that cannot be had is refused before
the daemon starts: L{problem} is what the options ask (one line naming the
section and the reason, exit status 78).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence

from twisted.logger import Logger

from dirobserver.config.settings import WATCH_AUTO, WATCH_FANOTIFY, SectionSettings
from dirobserver.sources.fanotify import FanotifySource
from dirobserver.sources.fanotify_calls import (
    FAN_EVENT_ON_CHILD,
    FAN_ONDIR,
    LIBC_FANOTIFY,
    FanotifyUnavailable,
    LibcFanotify,
)
from dirobserver.sources.fanotify_paths import HandlePaths
from dirobserver.sources.fstype import remote_kind, statfs_type
from dirobserver.sources.liveness import InotifyLivenessProbe
from dirobserver.sources.masks import IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF, IN_MOVED_FROM, IN_ONLYDIR
from dirobserver.util.reactor import IDaemonReactor

#: What every group asks for besides its sections' masks: directory events,
#: and the directory changes that end a watch.
BASE_MASK = (FAN_ONDIR | FAN_EVENT_ON_CHILD | IN_MOVED_FROM | IN_DELETE | IN_MOVE_SELF
             | IN_DELETE_SELF)


def mark_mask(mask: int) -> int:
    """What a filesystem mark asks for: C{mask} (sections' inotify masks) and L{BASE_MASK}, no watch flag."""
    return (mask | BASE_MASK) & ~IN_ONLYDIR


def open_group(paths: Iterable[bytes], mask: int, calls: LibcFanotify = LIBC_FANOTIFY) -> int:
    """
    A fanotify group with a filesystem mark on the filesystem of each of
    C{paths} (one per filesystem: a second mark on the same one only adds
    its mask), asking for C{mask} besides L{BASE_MASK}.  Needs
    C{CAP_SYS_ADMIN}: called before privileges are dropped.

    @raise FanotifyUnavailable: the group or a mark cannot be had (its
        C{filename} is the path whose mark failed).
    """
    descriptor = calls.init()
    try:
        for path in paths:
            marked_by = mark_by(calls, descriptor, path, mask)
            calls.handle_of(marked_by)  # a filesystem without handles says so now
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def mark_by(calls: LibcFanotify, descriptor: int, path: bytes, mask: int) -> bytes:
    """
    Mark the filesystem of C{path}; the directory the mark was made by.

    The kernel wants read permission on the path that names the filesystem,
    but the mark is the whole filesystem's, whichever directory names it: a
    section's directory the daemon cannot read at the start (its mode
    changed for a while) is not a reason to refuse fanotify, so its nearest
    ancestor on the same filesystem that can be read names it instead (the
    directory itself is watched as any unreadable one is: as soon as it
    can be).

    @raise FanotifyUnavailable: the mark cannot be had (not for C{EACCES}
        while an ancestor on the filesystem is left to try).
    """
    device = os.stat(path).st_dev
    while True:
        try:
            calls.mark_filesystem(descriptor, path, mark_mask(mask))
            return path
        except FanotifyUnavailable as e:
            parent = os.path.dirname(path)
            if e.errno != errno.EACCES or parent == path or os.stat(parent).st_dev != device:
                raise
            path = parent


def existing(path: str) -> bytes:
    """C{path}, or its nearest ancestor that exists (a missing directory's filesystem is its parent's)."""
    raw = os.fsencode(os.path.abspath(path))
    while not os.path.exists(raw) and raw != b"/":
        raw = os.path.dirname(raw)
    return raw


def problem(path: str, calls: LibcFanotify = LIBC_FANOTIFY) -> str | None:
    """Why fanotify cannot watch C{path} here (None: it can): makes a group and a mark, then closes them."""
    try:
        descriptor = open_group([existing(path)], 0, calls)
    except FanotifyUnavailable as e:
        return e.reason
    except OSError as e:
        return f"fanotify cannot be set up ({e.strerror})"
    os.close(descriptor)
    return None


def refusal(sections: Sequence[SectionSettings], calls: LibcFanotify = LIBC_FANOTIFY) -> str | None:
    """
    The one-line refusal for the first section that asks for fanotify
    (C{watch_mode = fanotify}) where it cannot be had; None when all can.
    One probe per filesystem.
    """
    said: dict[int, str | None] = {}
    for section in sections:
        if section.watch_mode != WATCH_FANOTIFY:
            continue
        path = existing(section.directory)
        try:
            device = os.stat(path).st_dev
        except OSError:
            device = -1
        if device not in said:
            said[device] = problem(os.fsdecode(path), calls)
        why = said[device]
        if why is not None:
            return f"[{section.name}] watch_mode = fanotify cannot be had for {section.directory}: {why}"
    return None


def wants(section: SectionSettings) -> bool:
    """Whether C{section} would be watched by fanotify if it can be had."""
    return section.watch_mode == WATCH_FANOTIFY or (
        section.watch_mode == WATCH_AUTO and section.recursive)


class FanotifyGroup:
    """
    The fanotify group of the sections that use it (see the module docstring).

    @ivar source: the group's source once L{open}ed (None: no section uses it).
    """

    _log = Logger()

    def __init__(self, reactor: IDaemonReactor, on_overflow: Callable[[], None],
                 calls: LibcFanotify = LIBC_FANOTIFY) -> None:
        self._reactor = reactor
        self._on_overflow = on_overflow
        self._calls = calls
        self.source: FanotifySource | None = None
        #: the devices (st_dev) marked, and the sections given the group
        self._devices: set[int] = set()
        self._chosen: set[str] = set()
        #: the directories' paths by their handles (the lazy trees'); its
        #: descriptors are opened with the marks
        self._paths = HandlePaths(calls)
        #: the watchdog's probe of the group (see L{start_probe})
        self.probe: InotifyLivenessProbe | None = None

    def open(self, sections: Sequence[SectionSettings], mask: int, probed: bool = False) -> None:
        """
        Make the group and the marks of C{sections} that want fanotify
        (privileged).  C{mask}: what the sections ask for, together.
        C{probed}: the watchdog will probe the group, in a directory of the
        temporary directory, whose filesystem is marked too.
        """
        candidates = [s for s in sections if wants(s)]
        if not candidates:
            return
        try:
            descriptor = self._calls.init()
        except FanotifyUnavailable as e:
            for section in candidates:
                self._not_chosen(section, e.reason)
            return
        marked: dict[int, str | None] = {}
        for section in candidates:
            path = existing(section.directory)
            if section.watch_mode == WATCH_AUTO:
                try:
                    kind = remote_kind(statfs_type(path))
                except OSError:
                    kind = None
                if kind is not None:
                    continue  # polled: fstype's choice, said by the monitor
            why = self._mark(descriptor, path, mask, marked)
            if why is not None:
                self._not_chosen(section, why)
                continue
            self._chosen.add(section.name)
            if section.watch_mode == WATCH_AUTO:
                self._log.info(
                    "[{section}] {directory}: watched by fanotify (watch_mode = auto, recursive: one "
                    "filesystem mark instead of an inotify watch per directory)",
                    section=section.name, directory=section.directory,
                )
        if not self._chosen:
            os.close(descriptor)
            self._paths.close()
            return
        if probed and self._mark(descriptor, os.fsencode(tempfile.gettempdir()), mask, marked):
            self._log.error("The watchdog cannot probe fanotify: the filesystem of {tmp} cannot be "
                            "marked", tmp=tempfile.gettempdir())
        self.source = FanotifySource(self._reactor, descriptor, self._on_overflow, self._calls,
                                     self._devices, self._paths)
        self.source.startReading()

    def _mark(self, descriptor: int, path: bytes, mask: int, marked: dict[int, str | None]) -> str | None:
        """Mark the filesystem of C{path} once; why it cannot be (None: marked)."""
        try:
            device = os.stat(path).st_dev
        except OSError as e:
            return f"its filesystem cannot be found ({e.strerror})"
        if device not in marked:
            try:
                # Marked, then asked for a handle: a filesystem without
                # handles refuses one or the other.
                marked_by = mark_by(self._calls, descriptor, path, mask)
                self._calls.handle_of(marked_by)
                self._paths.open_mount(marked_by)
                marked[device] = None
                self._devices.add(device)
            except FanotifyUnavailable as e:
                marked[device] = e.reason
        return marked[device]

    def _not_chosen(self, section: SectionSettings, why: str) -> None:
        if section.watch_mode == WATCH_FANOTIFY:
            # Checked before the start: only a change since (a remount) gets here.
            self._log.error("[{section}] watch_mode = fanotify cannot be had: {why}; watching "
                            "{directory} with inotify", section=section.name, why=why,
                            directory=section.directory)
        else:
            self._log.info("[{section}] {directory}: watched by inotify (watch_mode = auto: "
                           "fanotify cannot be had: {why})", section=section.name, why=why,
                           directory=section.directory)

    def source_for(self, section: SectionSettings) -> FanotifySource | None:
        """The group's source if C{section} uses it (a reloaded one: if its filesystem is marked)."""
        if self.source is None or not wants(section):
            return None
        if section.name in self._chosen:
            return self.source
        try:
            device = os.stat(existing(section.directory)).st_dev
        except OSError:
            device = None
        if device in self._devices:
            self._chosen.add(section.name)
            return self.source
        self._not_chosen(section, "its filesystem was not marked when the daemon started "
                                  "(a mark needs the privileges the daemon had then)")
        return None

    def start_probe(self, timeout: float, on_deaf: Callable[[], None], on_dead: Callable[[], None],
                    resets: int = 0) -> None:
        """
        Probe the group as the watchdog probes inotify (L{InotifyLivenessProbe}):
        C{on_deaf} lists every directory (the group cannot be made again
        without the privileges of the start), C{on_dead} gives up.
        """
        self.stop_probe()
        if self.source is None or timeout <= 0:
            return
        self.probe = InotifyLivenessProbe(
            timeout, self._reactor, on_deaf, on_dead, resets=resets, mechanism="fanotify",
            remedy="listing every directory")
        self.probe.start(self.source)

    def stop_probe(self) -> None:
        """Stop probing the group."""
        if self.probe is not None:
            self.probe.stop()
            self.probe = None

    def healthy(self) -> bool:
        """Whether the group answers its probe (yes without one)."""
        return self.probe is None or self.probe.healthy()

    def close(self) -> None:
        """Close the group (its marks go with it)."""
        self.stop_probe()
        if self.source is not None:
            self.source.close()
            self.source = None
