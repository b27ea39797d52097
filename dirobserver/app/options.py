"""
What every twistd plugin of the project checks first, and how it refuses.

The observer (L{dirobserver.app.tap}) and the worker
(L{dirobserver.worker.tap}) share the log options, C{--metrics} and
C{--config}; a bad value is one line on standard error and exit status 78,
before twistd daemonizes, never a usage text or a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from twisted.python import usage

from dirobserver.app.exits import EXIT_CONFIG
from dirobserver.ops import logs


def fail(program: str, message: str) -> NoReturn:
    """One line on standard error, then exit 78."""
    sys.stderr.write(f"{program}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG)


def check_shared(options: usage.Options, program: str) -> None:
    """The log options, C{--metrics} (can it listen?) and C{--config} (given?)."""
    try:
        logs.configure(options)
    except logs.LogOptionsError as e:
        fail(program, str(e))
    if options["metrics"]:
        from dirobserver.ops.http import check_endpoint

        problem = check_endpoint(options["metrics"])
        if problem is not None:
            fail(program, f"--metrics: {problem}")
    if not options["config"]:
        fail(program, "no configuration file given: use --config=PATH")
