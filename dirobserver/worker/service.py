"""
The worker's service: take events and start their jobs, C{--jobs} at a
time; renew the worker's claim key; stop without losing what was taken.

One loop takes events (L{WorkerService._take_loop}): it waits for a free
job slot, then takes the next event (a taken-over one first), and starts a
job for it (L{dirobserver.worker.job}: claim, run, file, acknowledge).

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
from collections.abc import Awaitable, Callable
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
from dirobserver.worker.job import FileJobs, Outcomes
from dirobserver.worker.queues import Event, ListEvents, StreamEvents
from dirobserver.worker.redis_link import RedisLink
from dirobserver.worker.settings import WorkerConfig

#: Seconds a blocking take waits in Redis before it is sent again (shorter
#: than any deadline: a stop waits for it).
BLOCK = 1.0

#: Seconds between two renewals of the claim key, at most.
RENEW_MAX = 10.0


async def _settled(d: defer.Deferred) -> bool:
    """Wait for C{d}; whether it succeeded (a cancellation or a timeout is not logged)."""
    try:
        await d
    except (defer.CancelledError, defer.TimeoutError):
        return False
    return True


class WorkerService(service.MultiService):
    """
    The worker (see the module docstring).  What its jobs came to, for the
    log and C{/metrics}, is L{outcomes}.
    """

    _log = Logger()
    name = "dirobserver-worker"

    def __init__(self, config: WorkerConfig, reactor: IDaemonReactor) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        self.main = RedisLink(config.redis, reactor)
        self.blocking = RedisLink(config.redis, reactor)
        self.events: ListEvents | StreamEvents
        if config.queue_type == "stream":
            self.events = StreamEvents(self.main, self.blocking, config.queue, config.worker_id,
                                       config.reclaim_after, config.group)
        else:
            self.events = ListEvents(self.main, self.blocking, config.queue, config.worker_id,
                                     config.reclaim_after)
        self.file_jobs = FileJobs(config, reactor, self.events, lambda: self._stopping)
        self.outcomes: Outcomes = self.file_jobs.outcomes
        self._tick = Periodic(self._tick_once, min(config.reclaim_after / 3, RENEW_MAX),
                              "claim renewal", reactor)
        self._backlog: deque[Event] = deque()
        self._jobs: dict[int, tuple[Event, defer.Deferred]] = {}
        self._slot: defer.Deferred | None = None
        self._loop: defer.Deferred | None = None
        self._stopping = False
        self._tick_refused: str | None = None
        self._next_job = 0
        self._stop_signals = exits.CleanStopSignals(reactor)
        self.ready = False

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

    async def _patiently(self, what: str, step: Callable[[], Awaitable[Any]]) -> Any:
        """
        C{step()}'s result, sent again every second while Redis refuses it
        (the stream's key of another type, a group deleted...), in one line
        per new refusal; None once stopping.  The take loop must not end on
        a refusal: it would take nothing more, silently, until a restart.
        """
        refused: str | None = None
        while not self._stopping:
            try:
                return await step()
            except txredisapi.ResponseError as e:
                if str(e) != refused:
                    refused = str(e)
                    self._log.error("Redis refused {what} of {queue}: {error}; trying again every "
                                    "second", what=what, queue=self.config.queue, error=refused)
                await task.deferLater(self._reactor, 1.0, lambda: None)
        return None

    async def _take_loop(self) -> None:
        await self._patiently("the worker's registration", self.events.register)
        if self._stopping:
            return
        await self._patiently("the worker's first renewal", self._renew_and_take_over)
        if self._stopping:
            return
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
                adopted = await self._patiently("a look at the worker's taken events",
                                                lambda: self.events.adopt(self._known()))
                self._backlog.extend(adopted or [])
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
                    await self._patiently("the worker's registration", self.events.register)
                continue
            refused = None
            await self._patiently("dropping unreadable events", self._report_bad)
            if event is None:
                continue
            if self._stopping:
                await self.file_jobs.give_back(event)
                break
            self._start(event)

    def _known(self) -> list[Event]:
        return [event for event, _ in self._jobs.values()] + list(self._backlog)

    def _tick_once(self) -> defer.Deferred:
        def renewed(_: Any) -> None:
            if self._tick_refused is not None:
                self._tick_refused = None
                self._log.info("Redis accepts the claim renewal of {queue} again",
                               queue=self.config.queue)

        def failed(failure: Failure) -> Failure | None:
            # The links close at the stop: a renewal waiting for Redis ends quietly.
            if self._stopping and failure.check(txredisapi.ConnectionError):
                return None
            if failure.check(txredisapi.ResponseError):  # one line per new refusal
                if str(failure.value) != self._tick_refused:
                    self._tick_refused = str(failure.value)
                    self._log.error("Redis refused the claim renewal of {queue}: {error}; trying "
                                    "again at the next", queue=self.config.queue,
                                    error=self._tick_refused)
                return None
            return failure

        return defer.Deferred.fromCoroutine(self._renew_and_take_over()).addCallbacks(renewed, failed)

    async def _renew_and_take_over(self) -> None:
        await self.events.renew(self._known())
        if self._stopping:
            return
        known = {event.handle for event in self._known()}
        lost = self.main.lost
        taken = [event for event in await self.events.take_over() if event.handle not in known]
        if self.main.lost != lost:
            # A command of the take-over lost its reply and was sent again:
            # what the first sending moved is in this worker's own list
            # (its own pending entries), unknown to it.
            taken += await self.events.adopt([*self._known(), *taken])
        if taken:
            self._log.info("Took over {n} events of a dead worker of {queue}", n=len(taken),
                           queue=self.config.queue)
            self._backlog.extend(taken)
            self._wake()
        await self._report_bad()

    async def _report_bad(self) -> None:
        for raw, why in await self.events.drop_bad():
            self.outcomes.bad += 1
            self._log.warn("Dropped an event of {queue}: {why}: {raw!r}", queue=self.config.queue,
                           why=why, raw=raw)

    # -- jobs --------------------------------------------------------------------

    def _start(self, event: Event) -> None:
        key = self._next_job
        self._next_job += 1
        d = defer.Deferred.fromCoroutine(self.file_jobs.handle(key, event))
        self._jobs[key] = (event, d)

        def ended(result: Any) -> None:
            del self._jobs[key]
            if isinstance(result, Failure) and result.check(txredisapi.ResponseError):
                self._log.error("Redis refused a command for {file} ({error}); its event stays "
                                "taken until a restart or a take-over", file=event.filename,
                                error=result.value)
            elif isinstance(result, Failure) and not result.check(defer.CancelledError):
                self._log.failure("Handling {file} failed; its event stays taken until a restart",
                                  result, file=event.filename)
            self._wake()

        d.addBoth(ended)

    def _wake(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.callback(None)

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
        if self.file_jobs.commands_running:
            # Each command's own --timeout bounds the wait (without one, it
            # is waited for until it ends).
            self._log.info("Waiting for {n} running commands to finish", n=self.file_jobs.commands_running)
            await self.file_jobs.commands_ended()
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
            await self.file_jobs.give_back(event)
        jobs = [d for _, d in self._jobs.values()]
        if jobs:
            await defer.DeferredList(jobs)
        if self.ready:
            await self.events.unregister()

    async def _close(self) -> None:
        await defer.gatherResults([self.main.stop(), self.blocking.stop()], consumeErrors=True)

    def _stopped(self, result: Any) -> defer.Deferred:
        self.file_jobs.release()
        if isinstance(result, Failure) and not result.check(defer.CancelledError):
            self._log.failure("Stopping failed", result)
        self._stop_signals.restore()
        o = self.outcomes
        self._log.info(
            "dirobserver-worker stopped: {ok} succeeded, {failed} failed ({timeouts} timed out), "
            "{skipped} skipped, {recovered} recovered, {given} given back",
            ok=o.succeeded, failed=o.failed, timeouts=o.timed_out, skipped=o.skipped,
            recovered=o.recovered, given=o.given_back)
        return defer.Deferred.fromCoroutine(self._close())
