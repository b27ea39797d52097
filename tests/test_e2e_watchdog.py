"""
The watchdog with the real daemon and the real reactor.

A deaf inotify cannot be provoked for real, so the give-up path (exit 70) is
proven by the Clock tests of test_watchdog.py.  What can be proven for real:
a healthy observer suspended for longer than monitor_inactivitytimeout is
neither stopped nor reset when it resumes, and a watcher reset (the
watchdog's first remedy) keeps every directory working and lists them again.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from dirobserver.app.observer import DirObserver
from dirobserver.config import settings as config
from tests.kit import RedisServer, drain, wait_until, write_config

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def test_suspended_longer_than_the_timeout_is_not_stopped(
    tmp_path, redis_server, redis_client, observer_factory
):
    """SIGSTOP for 3 s with monitor_inactivitytimeout=1: after SIGCONT it goes on."""
    watched = tmp_path / "in"
    watched.mkdir()
    path = write_config(
        tmp_path,
        {"s": {"active": "true", "directory": watched, "queue": "q"}},
        {"redis_server": "127.0.0.1", "redis_port": redis_server.port,
         "monitor_inactivitytimeout": 1},
    )
    # The watchdog's probe directory is made in TMPDIR: here, where the
    # test can count its probes.
    probes = tmp_path / "probes"
    probes.mkdir()
    observer = observer_factory(path, env={"TMPDIR": str(probes)}).start()
    observer.wait_for_line(f"Listed {watched}:", timeout=10)
    observer.signal(signal.SIGSTOP)
    time.sleep(3)  # the suspension, longer than the timeout, is what is tested
    observer.signal(signal.SIGCONT)
    # Several watchdog ticks (every 0.2 s) after the resume, each judging the
    # last probe and sending the next.
    resumed_at = last_probe(probes)
    assert wait_until(lambda: last_probe(probes) >= resumed_at + 5, 10), \
        f"no probes after the resume (last {last_probe(probes)}):\n" + observer.output()
    assert observer.is_running(), observer.output()
    output = observer.output()
    assert "giving up" not in output and "recreating the watcher" not in output, output
    (watched / "after-resume").touch()
    events = drain(redis_client, "q", 1, timeout=5)
    assert [e["filename"] for e in events] == ["after-resume"]


def last_probe(tmpdir: Path) -> int:
    """The number of the watchdog's latest probe file in C{tmpdir} (0 before any)."""
    numbers = [int(p.name.rsplit("-", 1)[1]) for p in tmpdir.glob("dirobserver-probe-*/probe-*")]
    return max(numbers, default=0)


class WatcherResetTests(unittest.TestCase):
    """reset_watcher(), as the watchdog calls it, in-process with a real Redis."""

    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.root = Path(tempfile.mkdtemp(prefix="dirobserver-reset-"))
        self.addCleanup(shutil.rmtree, self.root, True)

    def wait_for(self, predicate, timeout: float = 10.0) -> defer.Deferred:
        @defer.inlineCallbacks
        def poll():
            for _ in range(int(timeout / 0.02)):
                if predicate():
                    return True
                yield task.deferLater(reactor, 0.02, lambda: None)
            return predicate()

        return poll()

    @defer.inlineCallbacks
    def test_reset_keeps_every_directory_working_and_lists_them(self):
        dirs = [self.root / "a", self.root / "b"]
        for d in dirs:
            d.mkdir()
        path = write_config(
            self.root,
            {d.name: {"active": "true", "directory": d, "queue": f"q:{d.name}"} for d in dirs},
            {"redis_server": "127.0.0.1", "redis_port": self.server.port,
             "monitor_inactivitytimeout": 0},
        )
        tree = DirObserver(config.load(str(path)), reactor)
        tree.startService()
        self.addCleanup(lambda: tree.stopService() if tree.running else None)
        service = tree.core
        client = self.server.client()
        yield self.wait_for(lambda: all(m.listings == 1 for m in service.monitors))

        (dirs[0] / "before-reset").touch()
        yield self.wait_for(lambda: client.llen("q:a") == 1)
        old = service.watcher
        service.reset_watcher()
        self.assertIsNot(service.watcher, old)
        self.assertEqual(service.watcher.watch_count(), 2)
        # Every directory is listed again after the reset.
        ok = yield self.wait_for(lambda: all(m.listings == 2 for m in service.monitors))
        self.assertTrue(ok)
        (dirs[1] / "after-reset").touch()
        ok = yield self.wait_for(lambda: b"after-reset" in b"".join(client.lrange("q:b", 0, -1)))
        self.assertTrue(ok)
        # The old inotify descriptor is closed on the next turn.
        closed = yield self.wait_for(lambda: not old.connected)
        self.assertTrue(closed, "the old inotify descriptor is still open")
        yield tree.stopService()
