"""
Exit statuses, and how the daemon ends.

The statuses are the ``sysexits.h`` ones, from C{os.EX_*}: a supervisor (or
an operator reading C{$?}) can tell a bad configuration from a watchdog that
gave up.

A stop on SIGTERM or SIGINT is the normal, clean way for this daemon to end:
everything held has been delivered or reported, so the exit status is 0.
twistd would instead re-raise the signal once its reactor has stopped (so the
process "dies by SIGTERM"): it does so when the reactor's own signal handler
stopped the reactor.  L{CleanStopSignals} puts handlers of ours in place of
the reactor's once it runs; they stop the reactor the same way, and twistd
then ends the process with status 0.

twistd ends the process with status 0 once its reactor has stopped, whatever
the reason, and offers no way to pass a status through.  L{exit_after_shutdown}
arms an C{atexit} hook: it runs after twistd has stopped the services,
written its last log lines and removed its pidfile.  The hook runs every
other exit handler first (it is registered last, so it runs first and would
otherwise cut the others off), then ends the process with the status.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.logger import Logger

from dirobserver.util.failures import StartRefused
from dirobserver.util.reactor import IDaemonReactor

__all__ = [
    "EXIT_CANNOT_LISTEN", "EXIT_CONFIG", "EXIT_NO_INOTIFY", "EXIT_WATCHDOG",
    "CleanStopSignals", "StartRefused", "exit_after_shutdown", "stop_process",
]

#: A configuration that cannot be used (EX_CONFIG, 78).
EXIT_CONFIG = os.EX_CONFIG

#: The watchdog gave up: inotify stopped answering (EX_SOFTWARE, 70).
EXIT_WATCHDOG = os.EX_SOFTWARE

#: No inotify instance could be created (EX_OSERR, 71).
EXIT_NO_INOTIFY = os.EX_OSERR

#: The C{--metrics} endpoint cannot listen (EX_OSERR, 71): like the inotify
#: instances, a resource of the system that another program may hold (a
#: port in use, often by the instance before that is still stopping), so
#: a supervisor should try again, which it does not after L{EXIT_CONFIG}.
EXIT_CANNOT_LISTEN = os.EX_OSERR

_armed: list[int] = []

#: The signals that stop the daemon cleanly (status 0).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class CleanStopSignals:
    """
    SIGTERM and SIGINT stop the reactor, as its own handlers do, and the
    process then exits 0 (see the module docstring).

    Only the reactor's own handlers are replaced (a signal someone else
    handles, or one the reactor was told not to handle, is left alone), and
    L{restore} puts them back.
    """

    _log = Logger()

    def __init__(self, reactor: IDaemonReactor) -> None:
        """
        @param reactor: the reactor to stop (C{callFromThread} is what a
            signal handler may call).
        """
        self._reactor = reactor
        self._replaced: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def install(self) -> None:
        """
        Replace the reactor's handlers of L{STOP_SIGNALS}.  Call it once the
        reactor runs (it installs its handlers as it starts).
        """
        for number in STOP_SIGNALS:
            current = signal.getsignal(number)
            if callable(current) and getattr(current, "__self__", None) is self._reactor:
                self._replaced[number] = current
                signal.signal(number, self._stop)

    def restore(self) -> None:
        """Put the reactor's handlers back."""
        replaced, self._replaced = self._replaced, {}
        for number, handler in replaced.items():
            signal.signal(number, handler)

    def _stop(self, number: int, frame: FrameType | None) -> None:
        # What the reactor's handler does, but for recording the signal for
        # twistd to re-raise.
        self._log.info("Received {name}, shutting down.", name=signal.Signals(number).name)
        self._reactor.callFromThread(self._reactor.stop)


def exit_after_shutdown(status: int) -> None:
    """
    Make the process exit with C{status} once the interpreter shuts down.

    Called from the reactor just before it is stopped; the first status
    asked for wins.  Every C{atexit} handler registered by anyone still runs,
    exactly once, before the process ends.
    """
    if _armed:
        return
    _armed.append(status)
    atexit.register(_exit_now)


def stop_process(reactor: IDaemonReactor, status: int) -> None:
    """
    Stop the whole daemon (at once, or as soon as the reactor runs); the
    process then exits with C{status}.
    """
    exit_after_shutdown(status)
    reactor.callWhenRunning(reactor.stop)


def _exit_now() -> None:
    # Registered last, this handler runs first.  Run the others now (they
    # are still registered: CPython clears the table only after the loop),
    # taking this one out first so it is not entered again.
    #
    # atexit._run_exitfuncs is CPython's private, and the one reach into a
    # private part this daemon keeps.  No public way does the same: the exit
    # status of a Python process is fixed before its exit handlers run
    # (SystemExit raised in one is ignored), so only os._exit can change it,
    # and os._exit cuts off every handler not yet run.  A handler registered
    # first would run last, but handlers registered before this module was
    # imported (logging's, the test's) would still be cut off, and atexit
    # has no public way to list or run them.  Without it (another Python),
    # the status is still right; only handlers registered before are lost.
    atexit.unregister(_exit_now)
    run_others = getattr(atexit, "_run_exitfuncs", None)
    if run_others is not None:
        run_others()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # closed or broken: nothing more can be said there
    os._exit(_armed[0])
