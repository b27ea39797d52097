"""
The worker's section of the soak: a real ``twistd dirobserver-worker``
consumes it instead of a L{soak.consumer.Consumer}.

The worker (L{Worker}) runs a command that appends the file's base name to
C{worker/runs.log} (O_APPEND: concurrent runs do not mix) and sleeps 20 ms
(so a kill finds commands running), with C{--jobs=4},
C{--done=worker/done}, C{--failed=worker/failed} and a short
C{--reclaim-after} (L{RECLAIM_AFTER}), so that the events and the claimed
files of a worker killed by the C{worker_kill} fault are taken over by its
restarted successor within the run.  The faults that hit the whole daemon
(Redis killed, stopped, failed over, down past C{max_held_events}; the
observer killed, reloaded) hit the worker too: it must survive them.

L{Watch} plays the part of the section's consumer for the ledger: a file
that reaches C{done/} counts as received (L{soak.ledger.Ledger.receive}),
so the soak's checks (every due file received, no unexpected name) apply
to the worker's section as to the others; it then removes the file from
C{done/}, as the next stage of a pipeline would, so that its scans stay
cheap.  L{Watch.findings} adds what only a worker can break: a file run and
never filed (lost), filed without a run, filed in C{failed/}, or left
claimed (a C{.working} directory) once the worker stopped.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.kit import Resources, stop_process
from tests.kit.worker import LoggedWorker, recording_command

from .kinds import Section
from .ledger import Ledger

#: The worker's C{--reclaim-after}: short, so a killed worker's events come back within the run.
RECLAIM_AFTER = 5.0
#: What the command does after it recorded its run: a little work, so that
#: a killed worker leaves commands running and files claimed behind.
COMMAND_TAIL = "sleep 0.02"
#: The worker's lines of a take-over (L{dirobserver.worker.service}).
TOOK_OVER, RECOVERED = b"Took over ", b": recovered from worker "


class Worker:
    """
    The worker process across its restarts (one log file for all).

    @ivar lock: held while the worker is deliberately down (see
        L{soak.daemon.Daemon.lock}).
    """

    def __init__(self, resources: Resources, config: Path, root: Path, section: Section) -> None:
        self.resources, self.config, self.section = resources, config, section
        self.workdir = root / "worker"
        self.done, self.failed, self.runs = self.workdir / "done", self.workdir / "failed", self.workdir / "runs.log"
        self.workdir.mkdir()
        self.lock = threading.RLock()
        self.process: LoggedWorker | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / "worker.log"

    def start(self, timeout: float = 60.0) -> float:
        """Start a worker and wait for its ready line; seconds it took."""
        options = ["--jobs=4", f"--done={self.done}", f"--failed={self.failed}",
                   f"--reclaim-after={RECLAIM_AFTER:g}"]
        self.process = LoggedWorker(self.resources, self.config, self.workdir, self.section.name, options,
                                    recording_command(self.runs, COMMAND_TAIL), append=self.starts > 0)
        self.starts += 1
        return self.process.wait_ready(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.proc.kill()
        self.process.proc.wait()

    def exited(self) -> int | None:
        """The exit status if the worker ended when no fault asked it to."""
        if self.process is None or not self.lock.acquire(blocking=False):
            return None
        try:
            return self.process.proc.poll()
        finally:
            self.lock.release()

    def stop(self) -> int | None:
        """SIGTERM (running commands finish), SIGKILL after 60 s; the exit status."""
        assert self.process is not None
        return stop_process(self.process.proc, grace=60.0)

    def count(self, text: bytes) -> int:
        try:
            return self.log.read_bytes().count(text)
        except OSError:
            return 0


def worker_kill(s: Any, rng: Any, _: Section | None) -> str:
    """The C{worker_kill} fault: SIGKILL the worker, start another (a new id) a moment later."""
    worker: Worker = s.worker
    down = rng.uniform(0.0, 1.5)
    with worker.lock:
        worker.kill()
        time.sleep(down)
        ready = worker.start()
    return (f"SIGKILL, restarted after {down:.1f} s, ready in {ready:.2f} s "
            f"(takes over after --reclaim-after {RECLAIM_AFTER:g} s)")


class Watch(threading.Thread):
    """
    The worker's section's consumer, for the ledger (see the module
    docstring); the attributes of L{soak.consumer.Consumer} the soak reads.

    @ivar events: runs of the command; @ivar files: files filed in done/.
    """

    def __init__(self, section: Section, ledger: Ledger, worker: Worker) -> None:
        super().__init__(name=f"worker-{section.name}", daemon=True)
        self.section, self.ledger, self.worker = section, ledger, worker
        self.events = self.files = self.errors = self.refusals = 0
        self.failed: BaseException | None = None
        self.ran: Counter[str] = Counter()
        self.filed: set[str] = set()
        self._offset = 0
        self._partial = b""
        self._finish = threading.Event()

    def finish(self) -> None:
        """Stop once nothing new has come for a second (after the worker's SIGTERM)."""
        self._finish.set()

    def run(self) -> None:
        quiet_since: float | None = None
        try:
            while True:
                got = self._look()
                now = time.time()
                if got:
                    quiet_since = None
                elif self._finish.is_set():
                    quiet_since = quiet_since or now
                    if now - quiet_since >= 1.0:
                        return
                time.sleep(0.25)
        except BaseException as e:  # reported by the soak as a failure of the run
            self.failed = e

    def _look(self) -> int:
        """Read the new runs and the files filed since the last look; how many."""
        got = 0
        try:
            with open(self.worker.runs, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            self._offset += len(chunk)
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                self.ran[os.fsdecode(line)] += 1
            self.events += len(lines)
            got += len(lines)
        try:
            entries = list(os.scandir(self.worker.done))
        except FileNotFoundError:
            entries = []
        now = time.time()
        for entry in entries:
            self.filed.add(entry.name)
            # Received at the moment it was seen filed; the event's own
            # stamp is the worker's, not known here (the kind checks no
            # early announcement).
            if self.ledger.receive(self.section.index, entry.name, now, now) is not None:
                self.files += 1
            os.unlink(entry.path)
            got += 1
        return got

    def findings(self) -> dict[str, int]:
        """What the worker did with its section's files (after its final SIGTERM and L{finish})."""
        self._look()
        in_failed = set(os.listdir(self.worker.failed)) if self.worker.failed.exists() else set()
        claimed = [p for p in self.section.directory.rglob("*.working") if p.is_dir()]
        ran = set(self.ran)
        return {
            "run": len(ran),
            "runs": sum(self.ran.values()),
            "filed": len(self.filed),
            "failed": len(in_failed),
            # Run, and neither in done/ nor in failed/: lost by the worker.
            "lost": len(ran - self.filed - in_failed),
            "filed_not_run": len(self.filed - ran),
            "left_claimed": len(claimed),
            "starts": self.worker.starts,
            "take_overs": self.worker.count(TOOK_OVER),
            "recovered": self.worker.count(RECOVERED),
        }
