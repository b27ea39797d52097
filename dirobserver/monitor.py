"""
One monitored directory: its watch, its filters, its listings.

A L{DirectoryMonitor} is the sink of its directory's inotify watch (see
L{dirobserver.watcher}): it filters each new entry, turns it into an event
(L{dirobserver.events}) and hands it to the writer (L{dirobserver.writer}).
It also runs the listings of its directory ("boot the pump" when the watch is
set, the forced poll, and the catch-up after an overflow or a Redis outage).

States: C{"watched"}, or C{"missing"} while the directory cannot be watched
(absent at start-up, deleted, moved, replaced by a file, permission denied);
the service tries missing directories again every second and a directory that
comes back is watched and listed.
"""

from __future__ import annotations

import bisect
import errno
import os
from typing import Any, Iterator

from twisted.internet import defer, task
from twisted.logger import Logger

from .config import SectionSettings
from .events import CREATED, EXISTS, EventEncoder
from .listing import CHUNK, scan_directory
from .watcher import IN_DELETE_SELF, IN_ISDIR, IN_MOVE_SELF, IN_UNMOUNT, Watcher, WatchError
from .writer import RedisWriter

WATCHED = "watched"
MISSING = "missing"


class DirectoryMonitor:
    """
    The observer's view of one active section of the configuration.

    @ivar state: L{WATCHED} or L{MISSING}.
    @ivar incomplete: the last listing stopped at C{poll_queue_limit}.
    """

    _log = Logger()

    def __init__(
        self,
        section: SectionSettings,
        writer: RedisWriter,
        reactor: Any,
        cooperator: task.Cooperator | None = None,
        slots: defer.DeferredSemaphore | None = None,
    ) -> None:
        self.section = section
        self._slots = slots if slots is not None else defer.DeferredSemaphore(1)
        self.directory = section.directory
        self._path = os.fsencode(section.directory)
        self._accepts = section.accepts
        self._subdirectories = section.subdirectories
        self._encoder = EventEncoder(section.directory)
        self._writer = writer
        self._queue = writer.queue(section.queue, section.counter)
        self._reactor = reactor
        self._cooperator = cooperator
        self._watcher: Watcher | None = None
        self._wd: int | None = None
        self._problem: str | None = None
        self._listing: defer.Deferred | None = None
        self._list_again = False
        self._again_full = False
        #: the last (mtime, name) announced by a listing cut by the limit
        self._cursor: tuple[float, str] | None = None
        #: where the configured path pointed when watched, if it is a link
        self._target: str | None = None
        self._stopped = False
        self.state = MISSING
        self.incomplete = False
        self.listings = 0

    # -- the watch -------------------------------------------------------------

    def attach(self, watcher: Watcher) -> bool:
        """Watch the directory with C{watcher} (a new one after a watchdog reset)."""
        self._watcher = watcher
        self._wd = None
        self._stopped = False
        return self.try_watch()

    def try_watch(self) -> bool:
        """
        Set the watch if the directory can be watched now, then list it.

        @return: whether the directory is watched.
        """
        if self._wd is not None:
            return True
        if self._watcher is None or self._stopped:
            return False
        try:
            self._wd = self._watcher.add(self._path, self)
        except WatchError as e:
            self.state = MISSING
            problem = _why_not(self.directory, e)
            if problem != self._problem:
                # One line per change of cause, not one per retry.
                self._problem = problem
                self._log.warn(
                    "[{section}] {problem}; watching it as soon as it can be",
                    section=self.section.name,
                    problem=problem,
                )
            return False
        came_back = self._problem is not None
        self._problem = None
        self.state = WATCHED
        self._target = None
        if os.path.islink(self.directory):
            self._target = os.path.realpath(self.directory)
            self._log.info(
                "[{section}] {directory} is a symbolic link to {target}; watching the target",
                section=self.section.name,
                directory=self.directory,
                target=os.path.realpath(self.directory),
            )
        self._log.info(
            "[{section}] {what} {directory} -> queue {queue}",
            section=self.section.name,
            what="Directory is back, watching" if came_back else "Watching",
            directory=self.directory,
            queue=self.section.queue,
        )
        self.relist()
        return True

    def check_target(self) -> None:
        """
        A configured path that is a symbolic link may be pointed elsewhere
        (a "current" link switched atomically): the kernel watch stays on the
        old target, which still exists, so no event says so.  Follow the
        link to its new target.
        """
        if self._target is None or self._wd is None:
            return
        target = os.path.realpath(self.directory)
        if target == self._target:
            return
        self._log.warn(
            "[{section}] {directory} now points to {target}: watching the new target",
            section=self.section.name,
            directory=self.directory,
            target=target,
        )
        if self._watcher is not None:
            self._watcher.remove(self._wd, self)
        self._wd = None
        self._target = None
        self.state = MISSING
        self.try_watch()

    def detach(self) -> None:
        """Stop watching and listing (the observer is stopping)."""
        self._stopped = True
        if self._watcher is not None and self._wd is not None:
            self._watcher.remove(self._wd, self)
        self._wd = None

    def file_events(self, batch: list[tuple[bytes, int]]) -> None:
        """Entries appeared in the directory: announce those that pass."""
        subdirectories, accepts = self._subdirectories, self._accepts
        encode, when = self._encoder.encode, self._watcher.read_time
        payloads = []
        for name, mask in batch:
            if mask & IN_ISDIR and not subdirectories:
                continue
            text = name.decode("utf-8", "surrogateescape")  # see events.decode_name
            if accepts(text):
                payloads.append(encode(text, CREATED, when))
        if payloads:
            self._writer.push_many(self._queue, payloads, self)

    def watch_ended(self, mask: int) -> None:
        """The directory was deleted, moved or unmounted."""
        self._wd = None
        self.state = MISSING
        if mask & IN_DELETE_SELF:
            why = "was deleted"
        elif mask & IN_MOVE_SELF:
            why = "was moved or renamed"
        elif mask & IN_UNMOUNT:
            why = "was unmounted"
        else:
            why = "is no longer watched"
        self._problem = f"{self.directory} {why}"
        self._log.warn(
            "[{section}] {directory} {why}: stopped watching it; watching it "
            "again when it is a directory again",
            section=self.section.name,
            directory=self.directory,
            why=why,
        )

    # -- listings --------------------------------------------------------------

    def relist(self, resume: bool = False) -> defer.Deferred:
        """
        List the directory and announce its files as C{"exists"}.

        @param resume: continue after the last file announced by a listing
            that C{poll_queue_limit} cut short (the catch-up), instead of
            starting again from the oldest file.  Without it, a queue whose
            consumer leaves files in place would see the same oldest files
            announced again and again and the newer ones never.

        A request during a listing is remembered and served by one more
        listing when the current one ends (a full one if any request was).
        """
        if self._listing is not None:
            self._list_again = True
            self._again_full = self._again_full or not resume
            return self._listing
        d = self._listing = defer.ensureDeferred(self._list(resume))

        def done(result: Any) -> Any:
            self._listing = None
            return result

        return d.addBoth(done)

    async def _list(self, resume: bool) -> None:
        again = True
        while again and not self._stopped and self._wd is not None:
            self._list_again = False
            self._again_full = False
            try:
                await self._list_once(resume)
            except Exception:
                self._log.failure("[{section}] Listing failed", section=self.section.name)
            again = self._list_again
            resume = not self._again_full

    async def _list_once(self, resume: bool) -> None:
        await self._writer.when_connected()
        # A few listings at a time: thousands of directories listed at
        # start-up would otherwise each hold a cooperative task, a listing
        # and an LLEN in flight at once.
        await self._slots.acquire()
        try:
            await self._list_in_slot(resume)
        finally:
            self._slots.release()

    async def _list_in_slot(self, resume: bool) -> None:
        room = None
        limit = self.section.poll_queue_limit
        if limit > 0:
            try:
                length = await self._writer.queue_length(self.section.queue)
            except Exception as e:
                self._log.warn(
                    "[{section}] LLEN {queue} failed ({error}); listing again later",
                    section=self.section.name,
                    queue=self.section.queue,
                    error=e,
                )
                self.incomplete = True
                return
            room = limit - length
            if room <= 0:
                if self.incomplete:
                    return  # said already; the catch-up tries again later
                self.incomplete = True
                self._log.warn(
                    "[{section}] Queue {queue} holds {length} events "
                    "(poll_queue_limit {limit}): listing put off until it has room",
                    section=self.section.name,
                    queue=self.section.queue,
                    length=length,
                    limit=limit,
                )
                return
        try:
            entries = await scan_directory(
                self.directory, self._accepts, self._subdirectories, self._cooperator
            )
        except OSError as e:
            self._log.warn(
                "[{section}] Cannot list {directory}: {error}",
                section=self.section.name,
                directory=self.directory,
                error=e.strerror or e,
            )
            return
        self.listings += 1
        if resume and self._cursor is not None:
            entries = entries[bisect.bisect_right(entries, self._cursor):]
        found = len(entries)
        if room is not None and found > room:
            entries = entries[:room]
            self._cursor = entries[-1]
            self.incomplete = True
            self._log.warn(
                "[{section}] Listing of {directory} stopped at poll_queue_limit "
                "{limit}: {sent} of {found} files announced",
                section=self.section.name,
                directory=self.directory,
                limit=limit,
                sent=len(entries),
                found=found,
            )
        else:
            self._cursor = None
            self.incomplete = False
        work = self._announce(entries)
        cooperate = self._cooperator.cooperate if self._cooperator else task.cooperate
        await cooperate(work).whenDone()
        self._log.debug(
            "[{section}] Listed {directory}: {n} files announced",
            section=self.section.name,
            directory=self.directory,
            n=len(entries),
        )

    def _announce(self, entries: list[tuple[float, str]]) -> Iterator[Any]:
        """Push C{"exists"} events, pausing while the writer is full."""
        now = self._reactor.seconds()
        writer = self._writer
        push, encode, queue, held = writer.push, self._encoder.encode, self._queue, writer.held
        # A listing never makes the writer drop events: it pauses at three
        # quarters of max_held (whatever other listings run at the same
        # time), which leaves room for live events.  Dropping here would ask
        # for this very listing again, endlessly.
        ceiling = max(1, writer.max_held * 3 // 4)
        for i, (_mtime, name) in enumerate(entries, 1):
            while held() >= ceiling:
                yield writer.room()
                if self._stopped:
                    return
            push(queue, encode(name, EXISTS, now), self)
            if i % CHUNK == 0:
                if self._stopped:
                    return
                yield None


def _why_not(directory: str, e: WatchError) -> str:
    """One line saying why C{directory} cannot be watched."""
    if e.errno == errno.ENOENT:
        return f"{directory} does not exist"
    if e.errno == errno.ENOTDIR:
        return f"{directory} is not a directory"
    if e.errno == errno.EACCES:
        return f"{directory}: permission denied"
    return str(e)
