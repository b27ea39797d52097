"""
What the events of a section mean when it announces complete files only.

A section with C{announce = closed}, or with a C{settle}, does not announce a
name when it appears.  L{CompleteFiles} reads its events one by one and
decides what each means for a file: created by an open (it waits for its
close), linked or moved in (complete at once), closed, modified (its settle
starts again), deleted or moved away (forgotten).  The files that are not
complete yet wait in a L{SettleTable}; the others are announced at once.

Telling a file created by C{open(2)} from a name linked in costs nothing on
the hot path: for the former the kernel reports C{IN_CREATE} then
C{IN_OPEN}; a hard link, a symbolic link, an C{O_TMPFILE} made visible with
C{linkat}, a FIFO or a node made by C{mknod} give C{IN_CREATE} alone.  The
two events of one C{open} mostly come in the same read, where they are
paired.  Only a creation whose open is not in the same read (a read that
split the pair, or a writer preempted between them) costs an C{lstat}: more
than one name, or no regular file, is a link and complete; a regular file
with one name waits a short grace (L{dirobserver.announce.settle.GRACE}) for its open.

A file created by an open for reading only, and never written, waits for a
close that inotify reports as C{IN_CLOSE_NOWRITE}, which is not asked for:
readers of every announced file would send it too.  Such a file waits until
the table forgets it or the observer starts again.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dirobserver.announce.event import CREATED, decode_name
from dirobserver.announce.settle import Announce, SettleTable
from dirobserver.config.settings import ANNOUNCE_CLOSED, SectionSettings
from dirobserver.sources.interface import Batch
from dirobserver.sources.masks import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_OPEN,
    WATCH_MASK,
)

#: What C{announce = closed} asks for besides L{WATCH_MASK}: opens (a file
#: created by an open, not linked in), closes, and names going away.
CLOSED_MASK = IN_OPEN | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM
#: What C{settle} asks for: every change starts a file's wait again.  Only the
#: sections with a settle ask for it: C{IN_MODIFY} comes with every write().
SETTLE_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM

_APPEARED = IN_CREATE | IN_MOVED_TO
_GONE = IN_DELETE | IN_MOVED_FROM


def section_mask(section: SectionSettings) -> int:
    """The events a section asks its event source for."""
    mask = WATCH_MASK
    if section.announce == ANNOUNCE_CLOSED:
        mask |= CLOSED_MASK
    if section.settle > 0:
        mask |= SETTLE_MASK
    return mask


def waits_for_complete(section: SectionSettings) -> bool:
    """Whether the section announces complete files only (else: names as they appear)."""
    return section.announce == ANNOUNCE_CLOSED or section.settle > 0


class CompleteFiles:
    """
    The events of one section that announces complete files only.

    @ivar waiting: the files not complete yet.
    """

    _log = Logger()

    def __init__(
        self,
        section: SectionSettings,
        clock: IReactorTime,
        announce: Announce,
        relist: Callable[[], object],
        catch_up: Callable[[], None] | None = None,
    ) -> None:
        """
        @param announce: pushes C{(text, event)} pairs stamped with a time.
        @param relist: lists the section's directory (when the table was
            full and forgot its files, the listing announces them).
        @param catch_up: delivers the events already queued (see
            L{dirobserver.announce.settle}).
        """
        self._path = os.fsencode(section.directory)
        self._accepts = section.name_filter  # in a tree, names are relative paths
        self._subdirectories = section.subdirectories
        self._announce = announce
        self._section = section.name
        self._settle = section.settle
        self._relist = relist
        self.waiting = SettleTable(section.settle, clock, announce, self._full, catch_up=catch_up)
        #: reads one batch of events (see L{dirobserver.sources.interface.EventSink})
        self.file_events: Callable[[Batch, float], None] = (
            self._closed_events if section.announce == ANNOUNCE_CLOSED else self._settled_events
        )

    def _full(self, count: int) -> None:
        """The table was full and forgot its C{count} files: say so, and list the directory."""
        settle = self._settle
        when = f"once unmodified for {settle:g} s" if settle else "at once, open or not (settle is 0)"
        self._log.warn(
            "[{section}] {count} files wait to be complete, the most a section keeps: "
            "forgetting them; the listing that follows announces them {when}",
            section=self._section, count=count, when=when,
        )
        self._relist()

    def _settled_events(self, batch: Batch, read_time: float) -> None:
        """C{announce = created} with a settle: a new name waits for quiet."""
        subdirectories, accepts, waiting = self._subdirectories, self._accepts, self.waiting
        for name, mask in batch:
            if mask & _APPEARED:
                if mask & IN_ISDIR and not subdirectories:
                    continue
                text = decode_name(name)
                if accepts(text):
                    waiting.quiet(name, text, read_time)
            elif mask & _GONE:
                waiting.forget(name)
            else:  # modified, attributes changed, closed
                waiting.touched(name, read_time)

    def _closed_events(self, batch: Batch, read_time: float) -> None:
        """
        C{announce = closed}: a file created by an open waits for its close;
        a name moved or linked in is complete at once.  The creation, open
        and close of a small file mostly come in one read: they are paired
        here, and the table holds only the files still open at its end.
        """
        subdirectories, accepts, waiting = self._subdirectories, self._accepts, self.waiting
        fresh: dict[bytes, str] = {}  # created in this read, no open seen yet
        opened: dict[bytes, str] = {}  # created and opened in this read, not closed
        ready: dict[bytes, str] = {}  # complete in this read: now, or after the settle
        for name, mask in batch:
            if mask & IN_CLOSE_WRITE:
                # Created in this read, or waiting in the table (which, with a
                # settle, keeps it and returns None).
                text = opened.pop(name, None) or fresh.pop(name, None) or waiting.closed(name, read_time)
                if text is not None:
                    ready[name] = text
            elif mask & IN_OPEN:
                if mask & IN_ISDIR:
                    continue  # someone listed the directory or a sub-directory
                text = fresh.pop(name, None)
                if text is not None:
                    opened[name] = text
                else:
                    waiting.opened(name)
            elif mask & _APPEARED:
                if mask & IN_ISDIR and not subdirectories:
                    continue
                text = decode_name(name)
                if not accepts(text):
                    continue
                if mask & IN_CREATE and not mask & IN_ISDIR:
                    fresh[name] = text
                else:  # moved in (over any file of that name), or a directory
                    waiting.forget(name)
                    ready[name] = text
            elif mask & _GONE:
                # In one of the three at most: never announced.
                for table in (fresh, opened, ready):
                    table.pop(name, None)
                waiting.forget(name)
            else:  # modified or attributes changed (with a settle only)
                waiting.touched(name, read_time)
        for name, text in opened.items():
            waiting.open(name, text)
        if fresh:
            self._not_opened(fresh, ready, read_time)
        if not ready:
            return
        if waiting.settle:
            for name, text in ready.items():
                waiting.quiet(name, text, read_time)
        else:
            self._announce([(text, CREATED) for text in ready.values()], read_time)

    def _not_opened(self, fresh: dict[bytes, str], ready: dict[bytes, str], read_time: float) -> None:
        """
        Names created with no open in the same read: a link is complete; a
        regular file with one name waits a grace for its open.
        """
        for name, text in fresh.items():
            try:
                info = os.lstat(os.path.join(self._path, name))
            except FileNotFoundError:
                continue  # gone already: its deletion follows
            except OSError:
                info = None  # cannot tell: the grace decides
            if info is not None and (info.st_nlink > 1 or not stat.S_ISREG(info.st_mode)):
                ready[name] = text
            else:
                self.waiting.unsure(name, text, read_time)

