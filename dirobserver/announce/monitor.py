"""
One monitored directory: its watch, its filters, its listings.

A L{DirectoryMonitor} is the sink of its directory's watch (see
L{dirobserver.sources.interface}): its L{dirobserver.announce.announcer.Announcer}
filters each new entry, turns it into an event (L{dirobserver.announce.event}) and
hands it to the writer (L{dirobserver.redis.writer}).
It also runs the listings of its directory ("boot the pump" when the watch is
set, the forced poll, and the catch-up after an overflow or a Redis outage).

The watch is the service's inotify L{dirobserver.sources.inotify.InotifySource}, or the
section's own L{dirobserver.sources.polling.Poller} (C{watch_mode = poll}, or C{auto}
on a network or FUSE filesystem: L{dirobserver.sources.fstype}, decided again each
time the directory is watched anew).  A polled section announces what its
poller reports: the poller waits itself for new files to be complete.
With C{recursive}, a L{dirobserver.sources.tree.DirectoryTree} holds the watches of
the sub-directories, and names are paths relative to the directory.

States: C{"watched"}, or C{"missing"} while the directory cannot be watched
(absent at start-up, deleted, moved, replaced by a file, permission denied);
the service tries missing directories again every second and a directory that
comes back is watched and listed.

With C{announce = closed} or a C{settle}, a file is announced once it is
complete: L{dirobserver.announce.complete_files} reads the events of such a section, and
its L{dirobserver.announce.settle.SettleTable} holds the files until then.  The
monitor announces what they let through and keeps the table in step with
the watch: a new watch, an end of watch or lost events make it forget what
it held, and the listing that follows looks at those files again.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dirobserver.announce.announcer import Announcer
from dirobserver.announce.complete_files import CompleteFiles, section_mask, waits_for_complete
from dirobserver.announce.link_target import LinkTarget
from dirobserver.announce.listing import SectionListings
from dirobserver.announce.listing_context import ListingContext
from dirobserver.announce.listing_line import ListingLine
from dirobserver.announce.once import ListedOnce
from dirobserver.announce.settle import SettleTable
from dirobserver.config.settings import (
    ANNOUNCE_CLOSED,
    WATCH_FANOTIFY,
    WATCH_INOTIFY,
    WATCH_POLL,
    SectionSettings,
)
from dirobserver.redis.writer import RedisWriter
from dirobserver.sources.fstype import choose_mode
from dirobserver.sources.identity import identity
from dirobserver.sources.interface import Batch, EventSource, WatchError
from dirobserver.sources.masks import WATCH_MASK, ended_why
from dirobserver.sources.polling import Poller
from dirobserver.sources.tree import DirectoryTree, TreeContext
from dirobserver.util.stats import Histogram

WATCHED = "watched"
MISSING = "missing"


class DirectoryMonitor:
    """
    The observer's view of one active section of the configuration.

    @ivar state: L{WATCHED} or L{MISSING}.
    @ivar mode: how the directory is watched: L{WATCH_INOTIFY} or L{WATCH_POLL}.
    @ivar tree: the sub-directories; None until needed: made at once when
        C{recursive}, else when the directory is first polled (the tree
        tells its poller what a listing read).
    """

    _log = Logger()

    def __init__(
        self,
        section: SectionSettings,
        writer: RedisWriter,
        clock: IReactorTime,
        cooperator: task.Cooperator,
        turns: ListingLine,
        listing_seconds: Histogram,
        say_watching: bool = True,
    ) -> None:
        """
        @param cooperator: runs the listings (the service's own).
        @param turns: limits how many sections list at once (shared).
        @param listing_seconds: where listing durations are counted (shared).
        @param say_watching: whether the first watch is said at info level
            (else debug: thousands of sections' lines would cost seconds).
        """
        self.section = section
        self.directory = section.directory
        self._path = os.fsencode(section.directory)
        #: what this section asks its event source for
        self.mask = section_mask(section)
        #: the files waiting to be complete (None: the section announces names
        #: as they appear, and a directory of them costs nothing more)
        self.waiting: SettleTable | None = None
        self._announcer = Announcer(section, writer, self)
        self._complete: CompleteFiles | None = None
        #: where the watched directory's events go: announced at once, or
        #: through the files waiting to be complete (swapped as the mode
        #: changes, see L{_use})
        self._events: Callable[[Batch, float], None] = self._announcer.created_events
        if waits_for_complete(section):
            self._complete = CompleteFiles(section, clock, self._announcer.announce, self.relist,
                                           self._catch_up)
            self.waiting, self._events = self._complete.waiting, self._complete.file_events
        self._writer = writer
        self._clock = clock
        self._cooperator = cooperator
        #: the service's inotify watcher; and the source watching the
        #: directory now (that watcher, or the poller), with its handle
        self._watcher: EventSource | None = None
        #: the service's fanotify group, when this section uses it
        self._fanotify: EventSource | None = None
        self._source: EventSource | None = None
        self._wd: int | None = None
        self._poller: Poller | None = None
        self.mode = WATCH_INOTIFY
        self._problem: str | None = None
        #: where the configured path pointed when watched, if it is a link
        self._link = LinkTarget(section.name, section.directory)
        self._stopped = False
        #: how many watches were set: tells a watch from the one before it
        self._watches = 0
        #: whether setting the watch is said at info level (else debug)
        self._say_watching = say_watching
        #: the directory the watch is on (see L{_current_watch})
        self._identity: tuple[int, int] | None = None
        self.state = MISSING
        # A flat section watched by inotify has no use for a tree, and 10,000
        # of them took 9 MB: see _need_tree.
        self.tree: DirectoryTree | None = None
        self._listings = SectionListings(
            ListingContext(section, writer, self._announcer, self, cooperator, turns, listing_seconds,
                           self._current_watch, clock),
            self.waiting,
            self._catch_up,
        )
        if section.recursive:
            self._need_tree()

    def _need_tree(self) -> DirectoryTree:
        """The section's tree, made when first needed (see L{tree})."""
        if self.tree is None:
            self.tree = DirectoryTree(TreeContext(self.section, self.mask, self._subdirectory_events,
                                                  self._writer.room, self._clock, self._cooperator,
                                                  self._polling))
            self._listings.use_tree(self.tree)
        return self.tree

    def _catch_up(self) -> None:
        """Deliver the events already queued for the directory (see L{dirobserver.announce.settle})."""
        if self._source is not None:
            self._source.drain()

    def _current_watch(self) -> int | None:
        """
        Which watch covers the directory now (None: none; see
        L{SectionListings}).

        The path is looked at again: a directory deleted and recreated under
        it may not have said so yet.  The kernel reports the end of a
        directory only once nothing holds it open any more (a listing still
        reading it, a process working in it), seconds later in the soak;
        until then a listing must not take the new directory's files for
        the watched one's: their events go unseen.
        """
        if self._wd is None or self._stopped or identity(self.directory) != self._identity:
            return None
        return self._watches

    @property
    def incomplete(self) -> bool:
        """The last listing stopped at C{poll_queue_limit}: a catch-up is due."""
        return self._listings.incomplete

    @property
    def listings(self) -> int:
        """How many listings were done."""
        return self._listings.listings

    @property
    def once(self) -> ListedOnce | None:
        """The section's listings with C{announce_once} (their counts), or None."""
        return self._listings.once

    def relist(self, resume: bool = False) -> defer.Deferred:
        """List the directory (see L{SectionListings.relist})."""
        return self._listings.relist(resume)

    # -- the watch -------------------------------------------------------------

    def use_fanotify(self, source: EventSource | None) -> None:
        """Watch the directory (and its tree) with fanotify C{source} rather than inotify (None)."""
        self._fanotify = source

    def attach(self, watcher: EventSource) -> bool:
        """Watch the directory with C{watcher} (a new one after a watchdog reset)."""
        self._release()
        self._watcher = watcher
        self._stopped = False
        self._listings.start()
        return self.try_watch()

    def _polling(self) -> Poller:
        """The section's poller, made when first needed."""
        if self._poller is None:
            s = self.section
            self._poller = Poller(
                self._clock, self._cooperator, s.poll_interval, s.settle,
                s.announce == ANNOUNCE_CLOSED, f"[{s.name}] Polling", on_tick=self._need_tree().retry_limited,
            )
        return self._poller

    def _release(self) -> None:
        """Drop every watch of the section (the sub-directories' too)."""
        if self.tree is not None:
            self.tree.clear()
        if self._source is not None and self._wd is not None:
            self._source.remove(self._wd, self)
        self._source = self._wd = None
        if self._poller is not None:
            self._poller.close()
            self._poller = None

    def try_watch(self) -> bool:
        """
        Set the watch if the directory can be watched now, then list it.

        @return: whether the directory is watched.
        """
        if self._wd is not None:
            return True
        if self._watcher is None or self._stopped:
            return False
        mode, why = choose_mode(self.section.watch_mode, self.directory)
        polled = mode == WATCH_POLL
        if not polled:
            # fanotify where the service's group serves this section (else
            # inotify: the group said why).
            mode = WATCH_FANOTIFY if self._fanotify is not None else WATCH_INOTIFY
        watcher = self._fanotify if self._fanotify is not None else self._watcher
        source = self._polling() if polled else watcher  # a poller comes with a tree
        before = identity(self.directory)
        try:
            # A polled section announces what its poller reports: names gone
            # are of no interest to it.
            self._wd = source.add(self._path, self, WATCH_MASK if polled else self.mask)
        except WatchError as e:
            self.state = MISSING
            problem = f"{self.directory} {e.reason}"
            if problem != self._problem:
                # One line per change of cause, not one per retry.
                self._problem = problem
                self._log.warn(
                    "[{section}] {problem}; watching it as soon as it can be",
                    section=self.section.name,
                    problem=problem,
                )
            return False
        self._identity = identity(self.directory)
        if self._identity != before:
            # Replaced while the watch was set: which one is watched is not
            # known.  Try again at the next retry.
            source.remove(self._wd, self)
            self._wd = None
            self.state = MISSING
            return False
        # "Back" only for a directory watched before: one that did not exist
        # at the start (or could not be read) merely appeared.
        after_problem = self._problem is not None
        came_back = after_problem and self._watches > 0
        self._problem = None
        self._watches += 1
        self._source = source
        self._use(mode, why)
        if self.tree is not None:
            self.tree.rooted(None if polled else watcher, self._wd, polled, self._identity)
        # A new watch: what the old one said of open files no longer holds.
        self._forget_waiting()
        self.state = WATCHED
        self._link.watched()
        # A directory that comes back (or appears) always says so; the first
        # watch of each says so too, unless the service asked for quiet
        # (thousands of sections: their lines would cost seconds of the start).
        say = self._log.info if after_problem or self._say_watching else self._log.debug
        say(
            "[{section}] {what} {directory}{how} -> queue {queue}",
            section=self.section.name,
            what=("Directory is back, watching" if came_back
                  else "Now watching" if after_problem else "Watching"),
            directory=self.directory,
            how=(" and its sub-directories" if self.section.recursive else "")
            + (f", polled every {self.section.poll_interval:g} s" if polled else ""),
            queue=self.section.queue,
        )
        self.relist()
        return True

    def _use(self, mode: str, why: str | None) -> None:
        """Watch the directory in C{mode} from now on (see L{choose_mode})."""
        if why is not None and mode != self.mode:
            self._log.info(
                "[{section}] {directory} is {why}, where inotify does not see what other hosts "
                "write: polling it every {interval:g} s (watch_mode = auto)",
                section=self.section.name, directory=self.directory, why=why,
                interval=self.section.poll_interval,
            )
        self.mode = mode
        polled = mode == WATCH_POLL
        self._events = (self._announcer.created_events if polled or self._complete is None
                        else self._complete.file_events)
        self._listings.polled(polled)

    def check_target(self) -> None:
        """Watch the new target of a configured symbolic link pointed elsewhere (L{LinkTarget})."""
        if self._wd is not None and self._link.moved():
            self._release()
            self.state = MISSING
            self.try_watch()

    def detach(self) -> None:
        """Stop watching and listing (the observer is stopping)."""
        self._stopped = True
        self._listings.stop()
        self._forget_waiting()
        self._release()

    # -- the EventSink interface ---------------------------------------------------

    def file_events(self, batch: Batch, read_time: float) -> None:
        """Entries appeared in (or changed, or left) the directory."""
        if self.section.recursive:
            self.tree.top_events(batch)  # type: ignore[union-attr]
        self._events(batch, read_time)

    def _subdirectory_events(self, batch: Batch, read_time: float) -> None:
        """Events of the sub-directories, their names relative to the directory."""
        self._events(batch, read_time)

    def events_lost(self) -> None:
        """Events were lost: an open file's close may be among them.  A listing follows."""
        self._forget_waiting()

    def _forget_waiting(self) -> None:
        if self.waiting is not None:
            self.waiting.forget_all()

    def watch_ended(self, mask: int) -> None:
        """The directory was deleted, moved or unmounted."""
        self._wd = None
        if self.tree is not None:
            self.tree.clear()
        self._forget_waiting()
        self.state = MISSING
        why = ended_why(mask)
        self._problem = f"{self.directory} {why}"
        self._log.warn(
            "[{section}] {directory} {why}: stopped watching it; watching it "
            "again when it is a directory again",
            section=self.section.name,
            directory=self.directory,
            why=why,
        )
