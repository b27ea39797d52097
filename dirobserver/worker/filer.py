"""
Filing a claim after its command: into C{--done} (or deleted) or
C{--failed}, and trying again when filing fails.

Filing can fail for a while: the file's directory renamed away and back
during the command, a full disk.  The claim then stays where it is and
filing is tried again each L{FILING_RETRY} seconds, said once, until it
works; the event is acknowledged only after (see L{dirobserver.worker.service}).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet import task, threads
from twisted.logger import Logger

from dirobserver.util.reactor import IDaemonReactor
from dirobserver.worker import filing, run
from dirobserver.worker.settings import WorkerConfig

#: Seconds between two attempts to file a claim whose filing failed.
FILING_RETRY = 1.0


class Filer:
    """Files claims for a worker (the blocking work in the reactor's thread pool)."""

    _log = Logger()

    def __init__(self, config: WorkerConfig, reactor: IDaemonReactor, stopping: Callable[[], bool]) -> None:
        """
        @param stopping: whether the worker is stopping (a claim that cannot
            be filed then stays, for a live worker to recover).
        """
        self.config = config
        self._reactor = reactor
        self._stopping = stopping

    async def file(self, claimed: str, relative: str, outcome: run.Outcome, path: str) -> str | None:
        """
        File the claim; when that fails (its directory renamed away for a
        moment, a full disk), try again each L{FILING_RETRY} seconds, said
        once, until it works.  A claim whose directory has been gone for
        C{--reclaim-after} seconds went with its directory (deleted): there
        is nothing left to file.  A stop leaves the claim as it is: this
        worker's key expires and a live worker recovers it.

        @return: where the file went, for the log line; None when stopping.
        """
        private = os.path.dirname(claimed)
        failing_since: float | None = None
        missing_since: float | None = None
        while True:
            try:
                return await threads.deferToThreadPool(
                    self._reactor, self._reactor.getThreadPool(), self._file, claimed, relative,
                    outcome.succeeded)
            except OSError as e:
                now = self._reactor.seconds()
                if self._stopping():
                    self._log.error("{path}: {how}, but filing it failed ({error}); it stays claimed "
                                    "at {claimed} for a live worker to recover", path=path,
                                    how=outcome.describe(), error=f"{e.strerror}: {e.filename}",
                                    claimed=claimed)
                    return None
                if failing_since is None:
                    failing_since = now
                    self._log.error("{path}: {how}, but filing it failed ({error}); trying again "
                                    "each {every:g} s", path=path, how=outcome.describe(),
                                    error=f"{e.strerror}: {e.filename}", every=FILING_RETRY)
                if os.path.isdir(private):
                    missing_since = None
                elif missing_since is None:
                    missing_since = now
                elif now - missing_since >= self.config.reclaim_after:
                    self._log.warn("{path}: its claim {claimed} has been gone for {seconds:g} s "
                                   "(its directory deleted): nothing left to file", path=path,
                                   claimed=claimed, seconds=now - missing_since)
                    return "nothing left to file (its claim went with its directory)"
                await task.deferLater(self._reactor, FILING_RETRY, lambda: None)

    def _file(self, claimed: str, relative: str, succeeded: bool) -> str:
        """Blocking: file the claim in done/ (or delete it) or failed/; say where it went."""
        c = self.config
        top = (c.done if succeeded else c.failed)
        where = None if top is None else os.path.join(top, os.path.dirname(relative))
        return filing.file_claim(os.path.dirname(claimed), where)

