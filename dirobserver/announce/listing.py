"""
Directory listings ("boot the pump", the forced poll, the catch-ups).

L{SectionListings} runs the listings of one section: when to list, how much
(C{poll_queue_limit}), where a cut listing resumes, and what becomes of the
young files.  The reading of the directory (or tree), and the compact
sorted entries it gives, oldest first, are L{dirobserver.announce.scan}'s;
the announcing of the files found, as C{"exists"} events without overrunning
the writer, is L{dirobserver.announce.listing_announce}'s.

With a C{settle}, a listing announces only the files unmodified for that
long.  The younger ones (the newest, at the end of the sorted listing) wait
in the section's L{SettleTable}, where their own events restart their wait;
those that do not fit there are looked at again by a listing of the files
modified since (one call per section, at the time the oldest of them is old
enough).  Files that wait in the table (a file still open, with C{announce =
closed}) are never announced by a listing.  A polled section has no table
(its poller waits for new files itself): the young files a listing finds
are looked at again in the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.announce.event import decode_name
from dirobserver.announce.listing_announce import ListingAnnouncer
from dirobserver.announce.listing_context import ListingContext
from dirobserver.announce.listing_requests import ListingRequests, covering
from dirobserver.announce.scan import CHUNK, Walker, key_path, key_seconds, scan_directory, time_key
from dirobserver.announce.settle import TICK, SettleTable
from dirobserver.util.backoff import Recurring
from dirobserver.util.failures import describe_failure
from dirobserver.util.quiet import quiet_at, quiet_since


class SectionListings:
    """
    The listings of one section's directory.

    @ivar incomplete: the last listing stopped at C{poll_queue_limit} (or
        could not ask the queue's length, or could not read the directory):
        the catch-up lists the rest.
    @ivar listings: listings done.
    """

    _log = Logger()

    def __init__(self, context: ListingContext, waiting: SettleTable | None = None,
                 catch_up: Callable[[], None] | None = None) -> None:
        """
        @param waiting: the section's files waiting to be complete: a
            listing skips them, and leaves the young files it finds there
            (None: the section announces names as they appear).  A polled
            directory has no use for it (see L{polled}).
        @param catch_up: hands over the events already read or queued for
            the directory; with a C{waiting} table, a listing calls it
            before it announces (see L{dirobserver.announce.listing_announce}).
        """
        self._clock = context.clock
        self.section = context.section
        self._writer = context.writer
        #: what turns the files found into events
        self.found = ListingAnnouncer(context, waiting, catch_up, lambda: self._stopped)
        #: the announcing of a section with announce_once (None: without)
        self.once = self.found.once
        self._cooperator = context.cooperator
        self._turns = context.turns
        self._durations = context.durations
        self._watched = context.watched
        self._table = waiting
        #: the section's tree, once it has one (see L{use_tree})
        self.walker: Walker | None = None
        self._running: defer.Deferred | None = None
        #: what was asked during the running listing (see relist)
        self._again = ListingRequests()
        #: the later look at young files the table had no room for
        self._recheck: IDelayedCall | None = None
        self._recheck_since = 0.0
        #: the key (L{dirobserver.announce.scan}) of the last file announced by a
        #: listing cut by the limit
        self._cursor: bytes | None = None
        self._stopped = False
        self._llen_trouble = Recurring()
        self._list_trouble = Recurring()
        self.incomplete = False
        self.listings = 0

    def use_tree(self, tree: Walker) -> None:
        """List the section's tree from now on (see L{scan_directory}), not its directory alone."""
        self.walker = tree

    def polled(self, polled: bool) -> None:
        """
        The directory is polled from now on (C{polled}), or watched by
        inotify.  A polled directory's young files wait in no table: its
        poller waits for new files itself, and no event would move them
        there.  The monitor says so each time the directory is watched anew.
        """
        self.found.waiting = None if polled else self._table

    @property
    def waiting(self) -> SettleTable | None:
        """Where young files wait now: the section's table, or None while the directory is polled."""
        return self.found.waiting

    def stop(self) -> None:
        """Announce nothing more (the section is stopping)."""
        self._stopped = True
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None

    def start(self) -> None:
        """Allow listings again (after L{stop}: a watcher reset)."""
        self._stopped = False

    def relist(self, resume: bool = False, since: float | None = None) -> defer.Deferred:
        """
        List the directory and announce its files as C{"exists"}.

        @param resume: continue after the last file announced by a listing
            that C{poll_queue_limit} cut short (the catch-up), instead of
            starting again from the oldest file.  Without it, a queue whose
            consumer leaves files in place would see the same oldest files
            announced again and again and the newer ones never.
        @param since: only the files modified since then (the later look at
            files that were too young; older ones were announced already).

        A request during a listing is remembered and served by one more
        listing when the current one ends (see
        L{dirobserver.announce.listing_requests}).
        """
        if self._running is not None:
            self._again.ask(resume, since)
            return self._running
        if self._stopped or self._watched() is None:
            return defer.succeed(None)
        self._running = defer.Deferred()
        self._take_turn(resume, since)
        return self._running

    def _take_turn(self, resume: bool, since: float | None) -> None:
        # Waiting, a listing is an entry in the shared line, not a coroutine
        # (see dirobserver.announce.listing_line): thousands wait at start-up.
        self._turns.take(lambda: defer.ensureDeferred(self._turn(resume, since)))

    async def _turn(self, resume: bool, since: float | None) -> None:
        """One listing, in its turn; then the next one if any was asked meanwhile."""
        if self._again:
            # Asked while this one waited for its turn: it has not read
            # anything yet, so it can cover those requests too.
            resume, since = covering((resume, since), self._again.take())
        try:
            started = time.monotonic()
            if await self._list_in_turn(resume, since):
                self._durations.observe(time.monotonic() - started)
        except task.SchedulerStopped:
            self._again.take()  # the service is stopping: forget what was asked
        except Exception:
            self._log.failure("[{section}] Listing failed", section=self.section.name)
        if self._again and not self._stopped and self._watched() is not None:
            self._take_turn(*self._again.take())
            return
        self._again.take()  # stopped, or no watch: the next watch lists it all
        running, self._running = self._running, None
        if running is not None:
            running.callback(None)

    async def _room(self) -> int | None:
        """How many events the queue has room for (None: no limit, 0: none)."""
        limit = self.section.poll_queue_limit
        if limit <= 0:
            return None
        now = self._clock.seconds()
        try:
            length = await self._writer.queue_length(self.section.queue)
        except Exception:
            # One line per change of cause, not one per catch-up; worded as
            # the connection words its failures ("no answer in time", ...).
            why = describe_failure(Failure())
            if self._llen_trouble.happened(why, now):
                self._log.warn(
                    "[{section}] LLEN {queue} failed ({error}); listing again later",
                    section=self.section.name, queue=self.section.queue, error=why,
                )
            self.incomplete = True
            return 0
        trouble = self._llen_trouble
        if trouble.cause is not None:
            summary = trouble.summary(now)
            trouble.ended()
            self._log.info("[{section}] LLEN {queue} answers again (it failed {summary})",
                           section=self.section.name, queue=self.section.queue, summary=summary)
        room = limit - length
        if room <= 0 and not self.incomplete:  # else said already
            self.incomplete = True
            self._log.warn(
                "[{section}] Queue {queue} holds {length} events "
                "(poll_queue_limit {limit}): listing put off until it has room",
                section=self.section.name, queue=self.section.queue, length=length, limit=limit,
            )
        return max(room, 0)

    async def _list_in_turn(self, resume: bool, since: float | None) -> bool:
        """One listing; False when it could not run (no room, unreadable)."""
        room = await self._room()
        if room == 0:
            return False
        directory = self.section.directory
        watch = self._watched()
        if watch is None:
            return False  # the watch that comes lists the directory
        # Before the scan: a file modified while it runs counts as young.
        now = self._clock.seconds()
        try:
            entries = await scan_directory(
                directory, self.section.accepts, self.section.subdirectories, self._cooperator,
                self.walker,
            )
        except OSError as e:
            # The listing is still owed (events may have been lost to an
            # overflow or a Redis restart) and the directory is still
            # watched (made unreadable, say): the catch-up lists it again
            # until it can be read.  A full listing is retried in full.
            if not resume:
                self._cursor = None
            self.incomplete = True
            if self._list_trouble.happened(e.strerror or str(e), self._clock.seconds()):
                self._log.warn(
                    "[{section}] Cannot list {directory}: {error}; listing it once it can be read",
                    section=self.section.name, directory=directory, error=e.strerror or e,
                )
            return False
        if self._watched() != watch:
            return False  # see ListingContext.watched
        trouble = self._list_trouble
        if trouble.cause is not None:
            summary = trouble.summary(self._clock.seconds())
            trouble.ended()
            self._log.info("[{section}] {directory} can be listed again (it could not be {summary})",
                           section=self.section.name, directory=directory, summary=summary)
        self.listings += 1
        # Positions in the sorted entries: [start, end) is announced, and
        # from old_end on the files are too young.
        start, old_end = 0, len(entries)
        settle = self.section.settle
        if settle > 0:
            old_end = entries.index(time_key(quiet_since(now, settle), through=True))
        if since is not None:
            start = entries.index(time_key(since))
        elif resume and self._cursor is not None:
            start = entries.index(self._cursor, after=True)
        start = min(start, old_end)
        end = old_end
        found = end - start
        if room is not None and found > room:
            end = start + room
            # A look at recent files cut short: the catch-up lists it all.
            self._cursor = entries.key(end - 1) if since is None else None
            self.incomplete = True
            self._log.warn(
                "[{section}] Listing of {directory} stopped at poll_queue_limit "
                "{limit}: {sent} of {found} files announced",
                section=self.section.name, directory=directory,
                limit=self.section.poll_queue_limit, sent=room, found=found,
            )
        elif since is None:
            self._cursor = None
            self.incomplete = False
        young = len(entries) - old_end
        if young and self.waiting is None:
            # Polled: no table to leave them in (the poller waits for new
            # files itself); look again once the oldest of them is old enough.
            oldest = key_seconds(entries.key(old_end))
            self._look_again(quiet_at(min(oldest, now), settle), quiet_since(now, settle))
        elif young:
            young_paths = map(key_path, entries.keys(old_end))
            await self._cooperator.cooperate(self._hold(young_paths, now, watch)).whenDone()
        if self.once is None:
            await self._cooperator.cooperate(self.found.announce(entries.keys(start, end))).whenDone()
        elif not await self.found.announce_once(entries.keys(start, end), now, full=since is None and not
                                                self.incomplete and start == 0):
            self.incomplete = True
            return False
        self._log.debug(
            "[{section}] Listed {directory}: {n} files announced, {young} too young",
            section=self.section.name, directory=directory, n=end - start, young=young,
        )
        return True

    def _hold(self, young: Iterable[bytes], now: float, watch: int) -> Iterator[None]:
        """
        Leave files modified less than C{settle} ago (their paths, oldest
        first) in the table; when it has no room, look at them again once
        the oldest of them is old enough.  Stop when the watch C{watch},
        whose events keep the table true, is no longer the directory's (see
        L{ListingContext.watched}).
        """
        assert self.waiting is not None
        settle, hold = self.section.settle, self.waiting.hold
        directory = os.fsencode(self.section.directory)
        for i, raw in enumerate(young, 1):
            # The scan ran over several reactor turns: since it saw this file,
            # the file may have been deleted or written again, and those
            # events found no entry in the table to act on.  Look at the file
            # now, in the turn that puts it in the table (found by the soak).
            try:
                mtime = os.lstat(os.path.join(directory, raw)).st_mtime
            except OSError:
                continue  # gone: nothing to wait for
            # A time in the future (a clock set wrong) counts as now.
            if not hold(raw, decode_name(raw), quiet_at(min(mtime, self._clock.seconds()), settle)):
                self._look_again(quiet_at(min(mtime, now), settle), quiet_since(now, settle))
                return
            if i % CHUNK == 0:
                yield None
                if self._watched() != watch:
                    return

    def _look_again(self, when: float, since: float) -> None:
        """List the files modified since C{since} at C{when} (one call at a time)."""
        if self._recheck is not None:
            since = min(since, self._recheck_since)
            if self._recheck.getTime() <= when:
                self._recheck_since = since
                return
            self._recheck.cancel()
        self._recheck_since = since
        delay = max(TICK, when - self._clock.seconds())
        self._recheck = self._clock.callLater(delay, self._looking_again)

    def _looking_again(self) -> None:
        self._recheck = None
        self.relist(since=self._recheck_since)
