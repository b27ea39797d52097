"""
The worker's service: take an event, claim its file, run the command, file
it, acknowledge the event; C{--jobs} at a time; one log line per file.

One loop takes events (L{WorkerService._take_loop}): it waits for a free
job slot, then takes the next event (a taken-over one first), and starts a
job for it.  A job (L{WorkerService._handle}) runs in this order, so that a
crash at any point loses nothing:

 1. the event is read and its path checked (a bad one: one line, acknowledged);
 2. the file is claimed (L{dirobserver.worker.claim}); when it is not
    there, a claim of a dead worker is recovered; when there is none, the
    file is gone or another worker has it: acknowledged, nothing run;
 3. the command runs (L{dirobserver.worker.run});
 4. the file is filed (L{dirobserver.worker.filing}), in a thread;
 5. the log line, then the event is acknowledged.

Two events of one path never run at once in one worker: the second waits
for the first (a new file under the same name is then claimed afresh).

Every C{min(reclaim-after / 3, 10)} seconds the worker renews its claim
key and takes over the events of dead workers (L{dirobserver.worker.queues}).

Stopping (SIGTERM): no new event is taken (an event taken while stopping is
given back); events taken over but not started are given back; running
commands finish, each within its C{--timeout} (without one, until it
ends), else it is killed and its file and event are given back.  Then
the claim key is removed, so other workers take over at once whatever could
not be given back.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import txredisapi
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from dirobserver.app import exits
from dirobserver.util.failures import StartRefused
from dirobserver.util.periodic import Periodic
from dirobserver.util.reactor import IDaemonReactor
from dirobserver.util.stats import Histogram
from dirobserver.worker import claim, run
from dirobserver.worker.filer import Filer
from dirobserver.worker.queues import BadEvent, Event, ListEvents, StreamEvents
from dirobserver.worker.redis_link import RedisLink
from dirobserver.worker.settings import WorkerConfig, locate

#: Seconds a blocking take waits in Redis before it is sent again (shorter
#: than any deadline: a stop waits for it).
BLOCK = 1.0

#: Seconds between two renewals of the claim key, at most.
RENEW_MAX = 10.0

#: Bounds of the command duration histogram, in seconds.
DURATION_BOUNDS = (0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0)


async def _settled(d: defer.Deferred) -> bool:
    """Wait for C{d}; whether it succeeded (a cancellation or a timeout is not logged)."""
    try:
        await d
    except (defer.CancelledError, defer.TimeoutError):
        return False
    return True


class WorkerService(service.MultiService):
    """
    The worker (see the module docstring).

    Counters, for the log and C{/metrics}: C{succeeded}, C{failed},
    C{timed_out}, C{skipped} (file gone or claimed: a duplicate),
    C{recovered} (a dead worker's claim run again), C{bad} (unusable
    events), C{given_back}, and C{durations} (a histogram of command times).
    """

    _log = Logger()
    name = "dirobserver-worker"

    def __init__(self, config: WorkerConfig, reactor: IDaemonReactor) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        self.main = RedisLink(config.redis, reactor)
        self._filer = Filer(config, reactor, lambda: self._stopping)
        self.blocking = RedisLink(config.redis, reactor)
        self.events: ListEvents | StreamEvents
        if config.queue_type == "stream":
            self.events = StreamEvents(self.main, self.blocking, config.queue, config.worker_id,
                                       config.reclaim_after, config.group)
        else:
            self.events = ListEvents(self.main, self.blocking, config.queue, config.worker_id,
                                     config.reclaim_after)
        self._launcher = run.group_launcher()
        self._tick = Periodic(self._tick_once, min(config.reclaim_after / 3, RENEW_MAX),
                              "claim renewal", reactor)
        self._backlog: deque[Event] = deque()
        self._jobs: dict[int, tuple[Event, defer.Deferred]] = {}
        self._running: dict[int, run.Running] = {}
        self._paths: dict[str, list[defer.Deferred]] = {}
        self._slot: defer.Deferred | None = None
        self._loop: defer.Deferred | None = None
        self._stopping = False
        self._commands_ended: list[defer.Deferred] = []
        self._next_job = 0
        self._stop_signals = exits.CleanStopSignals(reactor)
        self.ready = False
        self.succeeded = self.failed = self.timed_out = self.skipped = 0
        self.recovered = self.bad = self.given_back = 0
        self.durations = Histogram(DURATION_BOUNDS)

    # -- starting ----------------------------------------------------------------

    def startService(self) -> defer.Deferred:
        # Not MultiService's: the metrics endpoint (the only child) starts
        # first, and one that cannot listen stops the worker before it
        # takes anything (as the observer does).
        service.Service.startService(self)
        c = self.config
        self._log.info(
            "dirobserver-worker {worker} starting: [{section}] {kind} {queue}, {jobs} at a time, "
            "command {command}, Redis at {redis}",
            worker=c.worker_id, section=c.section, kind=c.queue_type, queue=c.queue, jobs=c.jobs,
            command=" ".join(c.command), redis=c.redis.describe())
        self._reactor.callWhenRunning(self._stop_signals.install)
        return defer.Deferred.fromCoroutine(self._start_children_then_work())

    async def _start_children_then_work(self) -> None:
        try:
            for child in list(self):
                await defer.maybeDeferred(child.startService)
        except StartRefused as refused:  # said in its own line already
            exits.stop_process(self._reactor, refused.status)
            return
        self.main.start()
        self.blocking.start()
        self._loop = defer.Deferred.fromCoroutine(self._take_loop())
        self._loop.addErrback(self._loop_failed)

    def _loop_failed(self, failure: Failure) -> None:
        if not failure.check(defer.CancelledError):  # a stop that could not wait for Redis
            self._log.failure("The take loop failed", failure)

    async def _take_loop(self) -> None:
        await self.events.register()
        if self._stopping:
            return
        await self._renew_and_take_over()
        self._tick.start()
        self.ready = True
        self._log.info("dirobserver-worker ready: taking events of {queue}", queue=self.config.queue)
        refused: str | None = None
        while not self._stopping:
            if len(self._jobs) >= self.config.jobs:
                self._slot = defer.Deferred()
                await self._slot
                continue
            if self._backlog:
                self._start(self._backlog.popleft())
                continue
            try:
                event = await self.events.take(BLOCK)
            except txredisapi.ConnectionError:
                # The reply was lost: the event may have been taken all the same.
                if not self._stopping:
                    self._backlog.extend(await self.events.adopt(self._known()))
                continue
            except txredisapi.ResponseError as e:
                # Redis refused (the key holds another type, the group was
                # deleted...): one line per new refusal, not one per second.
                if str(e) != refused:
                    refused = str(e)
                    self._log.error("Redis refused to give an event of {queue}: {error}; trying "
                                    "again every second", queue=self.config.queue, error=refused)
                await task.deferLater(self._reactor, 1.0, lambda: None)
                if "NOGROUP" in refused:
                    await self.events.register()
                continue
            refused = None
            await self._report_bad()
            if event is None:
                continue
            if self._stopping:
                await self._give_back(event)
                break
            self._start(event)

    @property
    def commands_running(self) -> int:
        """How many commands run now."""
        return len(self._running)

    def _known(self) -> list[Event]:
        return [event for event, _ in self._jobs.values()] + list(self._backlog)

    def _tick_once(self) -> defer.Deferred:
        def stopped(failure: Failure) -> Failure | None:
            # The links close at the stop: a renewal waiting for Redis ends quietly.
            return None if self._stopping and failure.check(txredisapi.ConnectionError) else failure

        return defer.Deferred.fromCoroutine(self._renew_and_take_over()).addErrback(stopped)

    async def _renew_and_take_over(self) -> None:
        await self.events.renew(self._known())
        if self._stopping:
            return
        known = {event.handle for event in self._known()}
        taken = [event for event in await self.events.take_over() if event.handle not in known]
        if taken:
            self._log.info("Took over {n} events of a dead worker of {queue}", n=len(taken),
                           queue=self.config.queue)
            self._backlog.extend(taken)
            self._wake()
        await self._report_bad()

    async def _report_bad(self) -> None:
        for raw, why in await self.events.drop_bad():
            self.bad += 1
            self._log.warn("Dropped an event of {queue}: {why}: {raw!r}", queue=self.config.queue,
                           why=why, raw=raw)

    # -- jobs --------------------------------------------------------------------

    def _start(self, event: Event) -> None:
        key = self._next_job
        self._next_job += 1
        d = defer.Deferred.fromCoroutine(self._handle(key, event))
        self._jobs[key] = (event, d)

        def ended(result: Any) -> None:
            del self._jobs[key]
            if isinstance(result, Failure) and not result.check(defer.CancelledError):
                self._log.failure("Handling {file} failed; its event stays taken until a restart",
                                  result, file=event.filename)
            self._wake()

        d.addBoth(ended)

    def _wake(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.callback(None)

    async def _handle(self, key: int, event: Event) -> None:
        try:
            path, relative = locate(event, self.config.directories)
        except BadEvent as e:
            self.bad += 1
            self._log.warn("Dropped an event of {queue}: {why}", queue=self.config.queue, why=e)
            await self.events.ack(event)
            return
        while path in self._paths:
            waiter: defer.Deferred = defer.Deferred()
            self._paths[path].append(waiter)
            await waiter
        if self._stopping:
            await self._give_back(event)  # it waited for another event of its file
            return
        self._paths[path] = []
        try:
            await self._process(key, event, path, relative)
        finally:
            for waiter in self._paths.pop(path):
                waiter.callback(None)

    async def _process(self, key: int, event: Event, path: str, relative: str) -> None:
        c = self.config
        try:
            claimed = claim.claim(path, c.worker_id)
            if claimed is None:
                claimed = await self._recover(path)
        except OSError as e:
            self._log.error("Cannot claim {path}: {error}; event dropped", path=path, error=e.strerror)
            await self.events.ack(event)
            return
        if claimed is None:
            self.skipped += 1
            self._log.debug("{path}: gone or claimed by another worker; nothing to run", path=path)
            await self.events.ack(event)
            return
        if self._stopping:  # stopped while looking for a dead worker's claim
            claim.unclaim(claimed, path)
            await self._give_back(event)
            return
        running = run.start(self._reactor, self._launcher, c.executable,
                            run.arguments(c.command, claimed), c.timeout)
        self._running[key] = running
        try:
            outcome = await running.ended
        finally:
            del self._running[key]
            if not self._running:
                ended, self._commands_ended = self._commands_ended, []
                for waiter in ended:
                    waiter.callback(None)
        if outcome.timed_out and self._stopping:
            # A stop waits for a command at most until its --timeout: one
            # cut short then is not a failure of the file, it is given back.
            claim.unclaim(claimed, path)
            await self._give_back(event)
            self._log.info("{path}: {how} after {seconds:.2f} s; file and event given back",
                           path=path, how=outcome.describe(), seconds=outcome.duration)
            return
        self.durations.observe(outcome.duration)
        where = await self._filer.file(claimed, relative, outcome, path)
        if where is None:
            return  # stopping: the claim stays, for a live worker to recover
        if outcome.succeeded:
            self.succeeded += 1
            self._log.info("{path}: {how} in {seconds:.2f} s; {where}", path=path,
                           how=outcome.describe(), seconds=outcome.duration, where=where)
        else:
            self.failed += 1
            self.timed_out += outcome.timed_out
            stderr = f"; stderr: {outcome.stderr}" if outcome.stderr else ""
            self._log.warn("{path}: {how} in {seconds:.2f} s; {where}{stderr}", path=path,
                           how=outcome.describe(), seconds=outcome.duration, where=where,
                           stderr=stderr)
        await self.events.ack(event)

    async def _recover(self, path: str) -> str | None:
        """A claim of C{path} by a dead worker, taken over; else None."""
        for owner, claimed in sorted(claim.find_claims(path).items()):
            if owner == self.config.worker_id or await self.events.alive(owner):
                continue
            mine = claim.reclaim(claimed, path, self.config.worker_id)
            if mine is not None:
                self.recovered += 1
                self._log.info("{path}: recovered from worker {owner}, which stopped", path=path,
                               owner=owner)
                return mine
        return None

    async def _give_back(self, event: Event) -> None:
        self.given_back += 1
        await self.events.give_back(event)

    # -- stopping ------------------------------------------------------------------

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self._stopping = True
        self._tick.stop()
        self._wake()
        return defer.Deferred.fromCoroutine(self._stop()).addBoth(self._stopped)

    async def _stop(self) -> None:
        # Redis is waited for at most its timeout while stopping, and not at
        # all when it is gone already: what is not done then is done by
        # another worker (see the module docstring).
        grace = self.config.redis.timeout
        if self._loop is not None:
            if not self.ready or self.blocking.proto is None:
                self._loop.cancel()  # waiting for Redis: no take in flight
            else:
                self._loop.addTimeout(BLOCK + grace, self._reactor)  # a take returns within BLOCK
            await _settled(self._loop)
        if self._running:
            # Each command's own --timeout bounds the wait (without one, it
            # is waited for until it ends).
            self._log.info("Waiting for {n} running commands to finish", n=len(self._running))
            waiter: defer.Deferred = defer.Deferred()
            self._commands_ended.append(waiter)
            await waiter
        last = defer.Deferred.fromCoroutine(self._last_words())
        if self.main.proto is None:
            last.cancel()
        else:
            last.addTimeout(grace, self._reactor)
        if not await _settled(last):
            self._log.warn("Redis did not answer while stopping; what this worker had taken is "
                           "taken over by another worker after --reclaim-after")

    async def _last_words(self) -> None:
        """Give back what was not started, let the jobs acknowledge, unregister."""
        backlog, self._backlog = list(self._backlog), deque()
        for event in backlog:
            await self._give_back(event)
        jobs = [d for _, d in self._jobs.values()]
        if jobs:
            await defer.DeferredList(jobs)
        if self.ready:
            await self.events.unregister()

    async def _close(self) -> None:
        await defer.gatherResults([self.main.stop(), self.blocking.stop()], consumeErrors=True)

    def _stopped(self, result: Any) -> defer.Deferred:
        for waiter in self._commands_ended:
            waiter.callback(None)
        if isinstance(result, Failure) and not result.check(defer.CancelledError):
            self._log.failure("Stopping failed", result)
        self._stop_signals.restore()
        self._log.info(
            "dirobserver-worker stopped: {ok} succeeded, {failed} failed ({timeouts} timed out), "
            "{skipped} skipped, {recovered} recovered, {given} given back",
            ok=self.succeeded, failed=self.failed, timeouts=self.timed_out, skipped=self.skipped,
            recovered=self.recovered, given=self.given_back)
        return defer.Deferred.fromCoroutine(self._close())
