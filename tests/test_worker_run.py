"""L{dirobserver.worker.run}: the timeout, timed by a Clock, kills the command's whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dirobserver.worker import run
from tests.kit import wait_until


class _Transport:
    """What the protocol asks of its process transport: the pid, and closing stdin."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.closed = False

    def closeStdin(self) -> None:
        self.closed = True


def _live_members(pgid: int) -> list[int]:
    """The processes of group C{pgid} that are not zombies."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            found.append(int(entry))
    return found


def _outcomes(command: Any) -> list[run.Outcome]:
    seen: list[run.Outcome] = []
    command.ended.addCallback(seen.append)
    return seen


@pytest.mark.process
def test_the_timeout_kills_the_group_and_says_so() -> None:
    clock = Clock()
    # A real process group: a shell and its background child.
    group = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        command = run._Command(clock, timeout=5.0)  # type: ignore[arg-type]
        command.makeConnection(_Transport(group.pid))  # type: ignore[arg-type]
        seen = _outcomes(command)
        clock.advance(4.9)
        assert group.poll() is None
        clock.advance(0.1)
        assert group.wait(10) == -signal.SIGKILL
        # The background child went with it (killed: at most a zombie
        # waiting to be reaped by whoever adopted it).
        assert wait_until(lambda: _live_members(group.pid) == [], 10), _live_members(group.pid)
        command.processEnded(Failure(error.ProcessTerminated(signal=signal.SIGKILL)))
        assert seen[0].timed_out and seen[0].signal == signal.SIGKILL and not seen[0].succeeded
        assert seen[0].describe() == "killed by SIGKILL (timeout)"
        assert seen[0].duration == 5.0
        assert clock.getDelayedCalls() == []
    finally:
        if group.poll() is None:
            os.killpg(group.pid, signal.SIGKILL)
            group.wait()


def test_a_command_that_ends_in_time_cancels_its_timer_and_keeps_its_stderr_tail() -> None:
    clock = Clock()
    command = run._Command(clock, timeout=5.0)  # type: ignore[arg-type]
    seen = _outcomes(command)
    command.errReceived(b"".join(b"line %d\n" % n for n in range(10)))
    clock.advance(1.0)
    command.processEnded(Failure(error.ProcessTerminated(exitCode=3)))
    outcome = seen[0]
    assert (outcome.status, outcome.signal, outcome.timed_out) == (3, None, False)
    assert outcome.stderr == "line 5 | line 6 | line 7 | line 8 | line 9"
    assert outcome.describe() == "exit 3" and outcome.duration == 1.0
    assert clock.getDelayedCalls() == []


def test_exit_0_succeeds() -> None:
    command = run._Command(Clock(), timeout=None)  # type: ignore[arg-type]
    seen = _outcomes(command)
    command.processEnded(Failure(error.ProcessDone(0)))
    assert seen[0].succeeded and seen[0].describe() == "exit 0"
