"""
The observer under test (L{Daemon}): a real C{twistd -n dirobserver}
across its restarts, with one log file for all of them, and the lines of
that log the soak looks for (L{RELOADED}, L{REFUSED}, L{OVERFLOWED},
L{HELD_BOUND}, L{TRACEBACK}).  The faults (L{soak.faults}) stop, kill,
restart and reload it; the run (L{soak.__main__}) watches it for an exit
no fault asked for.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from tests.kit import LoggedObserver, Resources, drop_root_file_access
from tests.kit.processes import peak_rss_mb

RELOADED = b"Configuration reloaded"
REFUSED = b"Reload refused"
OVERFLOWED = b"queue overflowed"
HELD_BOUND = b"events held (max_held_events"
TRACEBACK = b"Traceback (most recent call last)"


def _obey_permissions() -> None:
    """
    preexec: as root, drop the capabilities that bypass directory
    permissions, so an unreadable directory is unreadable to the observer.
    """
    if os.geteuid() == 0:
        drop_root_file_access()


class Daemon:
    """
    The observer under test, across its restarts (one log file for all).

    @ivar lock: held while the observer is deliberately down, so that the
        watch for an unexpected exit does not mistake a fault for a crash.
    """

    def __init__(self, resources: Resources, config: Path, workdir: Path, extra_args: list[str]) -> None:
        self.resources, self.config, self.workdir = resources, config, workdir
        self.extra_args = extra_args
        self.lock = threading.RLock()
        self.observer: LoggedObserver | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / "observer.log"

    @property
    def proc(self) -> Any:
        assert self.observer is not None
        return self.observer.proc

    def start(self, timeout: float = 60.0) -> float:
        """Start an observer and wait for its ready line; seconds it took."""
        # The watchdog's probe directory of an observer killed by a fault
        # stays behind: in the scratch directory, it goes with it.
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        self.observer = LoggedObserver(self.resources, self.config, self.workdir, self.extra_args,
                                 preexec=_obey_permissions, append=self.starts > 0, env={"TMPDIR": str(tmp)})
        self.starts += 1
        return self.observer.wait_ready(timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def exited(self) -> int | None:
        """The exit status if the observer ended when no fault asked it to."""
        if self.observer is None or not self.lock.acquire(blocking=False):
            return None
        try:
            return self.proc.poll()
        finally:
            self.lock.release()

    def mark(self) -> int:
        """The log's size now: look for lines written after it."""
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def wait_for(self, text: bytes, since: int, timeout: float = 10.0) -> bool:
        """Whether a line with C{text} appears after C{since} within C{timeout}."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log, "rb") as f:
                f.seek(since)
                if text in f.read():
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def count(self, text: bytes) -> int:
        """How many times C{text} is in the log (every start's)."""
        return self.observer.log_count(text) if self.observer is not None else 0

    def rss_mb(self) -> float:
        """The current resident set of the observer, in MiB (0 when not running)."""
        try:
            rss = peak_rss_mb(self.proc.pid, "VmRSS")
        except OSError:
            return 0.0
        return rss if rss == rss else 0.0  # none for a process that exited
