"""
In-process tests of the observer core: the real L{ObserverService} (watcher,
monitors, listings) and L{RedisWriter} on the real reactor, a real
valkey-server (L{helpers.RedisServer}) and a real directory on tmpfs when
there is one.  For what cannot be provoked from outside a process: a small
bound on the files waiting to be complete, an inotify watch limit injected
through the libc seam.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from helpers import RedisServer
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from dirobserver.app.core import ObserverService
from dirobserver.config import settings as config
from dirobserver.redis.writer import RedisWriter


def sleep(seconds: float) -> defer.Deferred:
    """A Deferred that fires after C{seconds} of the real reactor."""
    return task.deferLater(reactor, seconds, lambda: None)


class CoreTestCase(unittest.TestCase):
    """
    A Redis server and its client, a directory (C{self.dir}), and
    L{make_core} for the core watching it; everything stopped at the end.
    """

    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.client = self.server.client()
        self.addCleanup(self.client.close)
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.dir = Path(tempfile.mkdtemp(prefix="dirobserver-core-", dir=base))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.core: ObserverService | None = None
        self.writer: RedisWriter | None = None
        #: what L{pop} took from queue "q": file name -> [(when, event)]
        self.received: dict[str, list[tuple[float, dict]]] = {}

    @defer.inlineCallbacks
    def wait(self, predicate, seconds: float = 10.0):
        """Take events (L{pop}) until C{predicate()} holds or C{seconds} pass; whether it holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pop()
            if predicate():
                return True
            yield sleep(0.01)
        self.pop()
        return predicate()

    def pop(self) -> None:
        """Take every event queued in "q" into L{received}, stamped with the time."""
        while (raw := self.client.rpop("q")) is not None:
            event = json.loads(raw)
            self.received.setdefault(event["filename"], []).append((time.time(), event))

    def make_core(self, keys: str, core: type[ObserverService] = ObserverService) -> ObserverService:
        """
        The core of one section "s" watching C{self.dir} into queue "q", with
        C{keys} (lines of INI) added to the section; not started.
        """
        text = (f"[common]\nredis_server=127.0.0.1\nredis_port={self.server.port}\n"
                f"monitor_inactivitytimeout=0\n[s:common]\nactive=true\nqueue=q\n"
                f"directory={self.dir}\n{keys}\n")
        settings = config.parse(text, "core.ini")
        self.writer = RedisWriter(settings.redis, settings.max_held_events, reactor)
        self.core = core(settings, self.writer, reactor)
        return self.core

    def start(self) -> None:
        assert self.core is not None and self.writer is not None
        self.writer.startService()
        self.core.startService()

    @defer.inlineCallbacks
    def tearDown(self):
        if self.core is not None and self.core.running:
            yield self.core.stopService()
        if self.writer is not None and self.writer.running:
            yield self.writer.stopService()
