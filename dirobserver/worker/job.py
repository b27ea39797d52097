"""
One event's job: claim its file, run the command, file it, acknowledge.

A job (L{FileJobs.handle}) runs in this order, so that a crash at any point
loses nothing:

 1. the event is read and its path checked (a bad one: one line, acknowledged);
 2. the file is claimed (L{dirobserver.worker.claim}); when it is not
    there, a claim of a dead worker is recovered; when there is none, the
    file is gone or another worker has it: acknowledged, nothing run; a
    claim that fails (no permission, a full disk) is tried again every
    second; for an event taken over, the empty private directories its
    dead worker left are removed;
 3. the command runs (L{dirobserver.worker.run});
 4. the file is filed (L{dirobserver.worker.filing}), in a thread;
 5. the log line, then the event is acknowledged.

Two events of one path never run at once in one worker: the second waits
for the first (a new file under the same name is then claimed afresh).

The service (L{dirobserver.worker.service}) decides when jobs start and
stop; this module knows what one job does and counts the outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import txredisapi
from twisted.internet import defer, task
from twisted.logger import Logger

from dirobserver.util.reactor import IDaemonReactor
from dirobserver.util.stats import Histogram
from dirobserver.worker import claim, run
from dirobserver.worker.filer import Filer
from dirobserver.worker.queues import BadEvent, Event, ListEvents, StreamEvents
from dirobserver.worker.settings import WorkerConfig, locate

#: Seconds between two attempts at a claim that failed (see L{FileJobs._claim}).
CLAIM_RETRY = 1.0


class _Stopped(Exception):
    """The worker stopped while a job waited: its event goes back."""


#: Bounds of the command duration histogram, in seconds.
DURATION_BOUNDS = (0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0)


@dataclass
class Outcomes:
    """
    What the worker's jobs came to, for the log and C{/metrics}.

    C{skipped}: file gone or claimed (a duplicate); C{recovered}: a dead
    worker's claim run again; C{bad}: unusable events; C{durations}: a
    histogram of command times.
    """

    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped: int = 0
    recovered: int = 0
    bad: int = 0
    given_back: int = 0
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BOUNDS))


class FileJobs:
    """The worker's jobs (see the module docstring), and the commands they run."""

    _log = Logger()

    def __init__(self, config: WorkerConfig, reactor: IDaemonReactor, events: ListEvents | StreamEvents,
                 stopping: Callable[[], bool]) -> None:
        """
        @param events: where events are acknowledged and given back.
        @param stopping: whether the worker is stopping (a job that has not
            run its command yet gives its event back then).
        """
        self.config = config
        self.outcomes = Outcomes()
        self._reactor = reactor
        self._events = events
        self._stopping = stopping
        self._filer = Filer(config, reactor, stopping)
        self._launcher = run.group_launcher()
        #: the commands running, by job
        self._running: dict[int, run.Running] = {}
        #: the paths with a job, and the jobs of the same path waiting for it
        self._paths: dict[str, list[defer.Deferred]] = {}
        #: fired when no command runs any more
        self._commands_ended: list[defer.Deferred] = []

    @property
    def commands_running(self) -> int:
        """How many commands run now."""
        return len(self._running)

    def commands_ended(self) -> defer.Deferred:
        """A Deferred that fires once no command runs (at once when none does)."""
        if not self._running:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._commands_ended.append(waiter)
        return waiter

    def release(self) -> None:
        """The worker has stopped: nobody waits for commands any more."""
        waiters, self._commands_ended = self._commands_ended, []
        for waiter in waiters:
            waiter.callback(None)

    async def give_back(self, event: Event) -> None:
        """
        Put C{event} back for another taker.  Redis refusing it (not for a
        while: that is waited out) leaves it taken by this worker, which
        another takes over once this one's key expires: said, not raised.
        """
        try:
            await self._events.give_back(event)
        except txredisapi.ResponseError as e:
            self._log.warn("Redis refused to give back an event of {queue} ({error}); another "
                           "worker takes it over after --reclaim-after", queue=self.config.queue,
                           error=e)
            return
        self.outcomes.given_back += 1

    async def handle(self, key: int, event: Event) -> None:
        """Job C{key}: C{event}'s file, steps 1 to 5 of the module docstring."""
        try:
            path, relative = locate(event, self.config.directories)
        except BadEvent as e:
            self.outcomes.bad += 1
            self._log.warn("Dropped an event of {queue}: {why}", queue=self.config.queue, why=e)
            await self._events.ack(event)
            return
        while path in self._paths:
            waiter: defer.Deferred = defer.Deferred()
            self._paths[path].append(waiter)
            await waiter
        if self._stopping():
            await self.give_back(event)  # it waited for another event of its file
            return
        self._paths[path] = []
        try:
            await self._process(key, event, path, relative)
        finally:
            for waiter in self._paths.pop(path):
                waiter.callback(None)

    async def _process(self, key: int, event: Event, path: str, relative: str) -> None:
        counts = self.outcomes
        try:
            claimed = await self._claim(path)
        except _Stopped:
            await self.give_back(event)
            return
        if event.taken_over:
            await self._clear_leftovers(path)
        if claimed is None:
            counts.skipped += 1
            self._log.debug("{path}: gone or claimed by another worker; nothing to run", path=path)
            await self._events.ack(event)
            return
        if self._stopping():  # stopped while looking for a dead worker's claim
            claim.unclaim(claimed, path)
            await self.give_back(event)
            return
        outcome = await self._run(key, claimed)
        if outcome.timed_out and self._stopping():
            # A stop waits for a command at most until its --timeout: one
            # cut short then is not a failure of the file, it is given back.
            claim.unclaim(claimed, path)
            await self.give_back(event)
            self._log.info("{path}: {how} after {seconds:.2f} s; file and event given back",
                           path=path, how=outcome.describe(), seconds=outcome.duration)
            return
        counts.durations.observe(outcome.duration)
        where = await self._filer.file(claimed, relative, outcome, path)
        if where is None:
            return  # stopping: the claim stays, for a live worker to recover
        if outcome.succeeded:
            counts.succeeded += 1
            self._log.info("{path}: {how} in {seconds:.2f} s; {where}", path=path,
                           how=outcome.describe(), seconds=outcome.duration, where=where)
        else:
            counts.failed += 1
            counts.timed_out += outcome.timed_out
            stderr = f"; stderr: {outcome.stderr}" if outcome.stderr else ""
            self._log.warn("{path}: {how} in {seconds:.2f} s; {where}{stderr}", path=path,
                           how=outcome.describe(), seconds=outcome.duration, where=where,
                           stderr=stderr)
        await self._events.ack(event)

    async def _run(self, key: int, claimed: str) -> run.Outcome:
        """Run the command on the claimed file; its outcome."""
        c = self.config
        running = run.start(self._reactor, self._launcher, c.executable,
                            run.arguments(c.command, claimed), c.timeout)
        self._running[key] = running
        try:
            return await running.ended
        finally:
            del self._running[key]
            if not self._running:
                self.release()

    async def _claim(self, path: str) -> str | None:
        """
        C{path} claimed, or a dead worker's claim of it recovered; None
        when there is neither (gone, or another worker has it).  A claim
        that fails (a full disk for the private directory, no permission,
        no descriptor left) is tried again every L{CLAIM_RETRY} seconds,
        said once, as filing is: dropping the event would leave the file
        unrun, since nothing announces it again.

        @raise _Stopped: the worker stops meanwhile (the event goes back).
        """
        failing = False
        while True:
            try:
                claimed = claim.claim(path, self.config.worker_id)
                if claimed is None:
                    claimed = await self._recover(path)
            except OSError as e:
                if not failing:
                    failing = True
                    self._log.error("Cannot claim {path}: {error}; trying again every {every:g} s",
                                    path=path, error=f"{e.strerror}: {e.filename}", every=CLAIM_RETRY)
                await task.deferLater(self._reactor, CLAIM_RETRY, lambda: None)
                if self._stopping():
                    raise _Stopped() from e
                continue
            if failing:
                self._log.info("{path}: claimed after all", path=path)
            return claimed

    async def _clear_leftovers(self, path: str) -> None:
        """
        Remove the empty private directories a dead worker left for
        C{path} (L{claim.leftovers}).  Only for an event taken over: only
        a worker that died with the event taken leaves one, and the listing
        it costs is not paid for every event.
        """
        for owner, private in sorted(claim.leftovers(path).items()):
            if owner == self.config.worker_id or await self._events.alive(owner):
                continue
            removed = claim.remove_leftover(private)
            if removed:
                self._log.info("{path}: removed {private}, left empty by worker {owner}, which stopped",
                               path=path, private=private, owner=owner)
            elif removed is False:
                self._log.warn("{path}: {private}, left by worker {owner}, which stopped, is not empty; "
                               "left in place", path=path, private=private, owner=owner)

    async def _recover(self, path: str) -> str | None:
        """A claim of C{path} by a dead worker, taken over; else None."""
        for owner, claimed in sorted(claim.find_claims(path).items()):
            if owner == self.config.worker_id or await self._events.alive(owner):
                continue
            mine = claim.reclaim(claimed, path, self.config.worker_id)
            if mine is not None:
                self.outcomes.recovered += 1
                self._log.info("{path}: recovered from worker {owner}, which stopped", path=path,
                               owner=owner)
                return mine
        return None
