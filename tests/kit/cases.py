"""
Test cases for the observer's parts run in-process (trial C{TestCase}s,
run by pytest):

 - L{CoreTestCase}: the real L{ObserverService} (watcher, monitors,
   listings) and L{RedisWriter} on the real reactor, a real valkey-server
   and a real directory on tmpfs when there is one; for what cannot be
   provoked from outside a process (a small bound on the files waiting to be
   complete, an inotify watch limit injected through the libc seam);
 - L{ClockedDirectoryCase}: a real directory, and time driven by a C{Clock},
   for the parts that scan and walk directories cooperatively
   (L{dirobserver.sources.polling}, L{dirobserver.sources.tree});
 - L{Connecting}: a mixin that starts a real L{RedisConnection}.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from dirobserver.app.core import ObserverService
from dirobserver.config import settings as config
from dirobserver.config.settings import RedisSettings
from dirobserver.redis.connection import RedisConnection
from dirobserver.redis.sentinel import route_for
from dirobserver.redis.writer import RedisWriter

from .redis_server import RedisServer
from .waiting import sleep, wait_for


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


class ClockedDirectoryCase(unittest.TestCase):
    """
    C{self.root}, a fresh directory; C{self.clock}; and C{self.cooperator},
    whose steps are calls of that clock.
    """

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="dirobserver-clocked-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.clock = task.Clock()
        self.cooperator = task.Cooperator(scheduler=lambda step: self.clock.callLater(0, step))

    def run_due(self, seconds: float = 0.0) -> None:
        """Let C{seconds} pass, then run every call due until none is (the cooperative work to its end)."""
        self.clock.advance(seconds)
        for _ in range(10_000):
            if not any(call.getTime() <= self.clock.seconds() for call in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)
        raise AssertionError("the cooperative work never ended")


class Connecting:
    """
    A mixin for trial tests on the real reactor: L{connect} starts a
    L{RedisConnection} on the route of its settings (the address, or the
    Sentinels) and collects its protocols in C{self.ups}.
    """

    def connect(self, settings: RedisSettings, retry_policy=None) -> RedisConnection:
        self.ups: list = []
        self.route = route_for(reactor, settings)
        connection = RedisConnection(
            settings, self.ups.append, lambda: None, lambda: 0,
            clock=reactor, route=self.route, retry_policy=retry_policy,
        )
        connection.start()
        self.addCleanup(connection.stop)  # type: ignore[attr-defined]
        return connection

    def wait_for(self, predicate, timeout: float = 5.0) -> defer.Deferred:
        """Whether C{predicate()} became true within C{timeout} seconds."""
        return wait_for(predicate, timeout)
