"""
A test-only twistd subcommand that uses L{dirobserver.ops.logs} exactly as
C{dirobserver/app/tap.py} does, so that the log options can be tested end to end
(a real twistd, foreground and daemon) on their own.

tests/test_logs.py writes a plugin dropin naming this module (C{tests.kit.logs_tap}) into a
temporary C{twisted/plugins} directory.  The service logs one line at every
level, a failure (new and legacy style) and a print, then stops the reactor.
"""

from __future__ import annotations

import sys

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python import log as legacy_log, usage

from dirobserver.ops import logs


class Options(usage.Options):
    optParameters = [*logs.OPT_PARAMETERS]

    def postOptions(self) -> None:
        try:
            logs.configure(self)
        except logs.LogOptionsError as e:
            sys.stderr.write(f"logtest: {e}\n")
            raise SystemExit(78) from e


class EveryLevel(Service):
    log = Logger(namespace="logtest")

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        for level in ("debug", "info", "warn", "error", "critical"):
            getattr(self.log, level)("line at {lvl} from {who}", lvl=level, who="logtest")
        try:
            raise ZeroDivisionError("new style")
        except ZeroDivisionError:
            self.log.failure("a new-style failure")
        try:
            raise KeyError("legacy style")
        except KeyError:
            legacy_log.err(None, "a legacy failure")
        print("printed to stdout")
        reactor.callLater(0.05, reactor.stop)


def makeService(options: Options) -> Service:
    return EveryLevel()
