"""
Exit statuses, and how the daemon ends with one that is not 0.

The statuses are the ``sysexits.h`` ones, from C{os.EX_*}: a supervisor (or
an operator reading C{$?}) can tell a bad configuration from a watchdog that
gave up.

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
import sys

#: A configuration that cannot be used (EX_CONFIG, 78).
EXIT_CONFIG = os.EX_CONFIG

#: The watchdog gave up: inotify stopped answering (EX_SOFTWARE, 70).
EXIT_WATCHDOG = os.EX_SOFTWARE

#: No inotify instance could be created (EX_OSERR, 71).
EXIT_NO_INOTIFY = os.EX_OSERR

_armed: list[int] = []


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


def _exit_now() -> None:
    # Registered last, this handler runs first.  Run the others now (they
    # are still registered: CPython clears the table only after the loop),
    # taking this one out first so it is not entered again.
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
