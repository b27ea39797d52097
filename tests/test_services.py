"""
The service tree (services.OrderedMultiService, tap.makeService) and the
exit path (exits.exit_after_shutdown, exits.CleanStopSignals).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from dirobserver.app import tap
from dirobserver.app.core import ObserverService
from dirobserver.app.embedded_redis import EmbeddedRedis
from dirobserver.app.exits import StartRefused
from dirobserver.app.observer import DirObserver
from dirobserver.app.ordered_services import OrderedMultiService
from dirobserver.app.reload import ReloadService
from dirobserver.config import settings as config
from dirobserver.ops.http import MetricsService
from dirobserver.ops.systemd import SystemdService
from dirobserver.redis.writer import RedisWriter
from tests.kit import REPO_ROOT, write_config


class Part(service.Service):
    """A child that records its start and stop, and takes C{delay} to do each."""

    def __init__(self, name: str, journal: list[str], clock: task.Clock, delay: float = 0,
                 fail: str = "") -> None:
        self.name, self.journal, self.clock, self.delay, self.fail = name, journal, clock, delay, fail

    def _step(self, what: str) -> defer.Deferred:
        self.journal.append(f"{what} {self.name}")

        def done() -> None:
            self.journal.append(f"{what} {self.name} done")
            if self.fail == what:
                raise RuntimeError(f"{self.name} cannot {what}")

        return task.deferLater(self.clock, self.delay, done)

    def startService(self) -> defer.Deferred:
        service.Service.startService(self)
        return self._step("start")

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        return self._step("stop")


class OrderedMultiServiceTests(unittest.TestCase):
    def tree(self, *parts: Part) -> OrderedMultiService:
        top = OrderedMultiService()
        for part in parts:
            part.setServiceParent(top)
        return top

    def test_children_start_in_order_and_stop_in_reverse_each_waiting(self):
        """The second child starts only once the first one's start has fired."""
        clock, journal = task.Clock(), []
        top = self.tree(Part("a", journal, clock, 1), Part("b", journal, clock, 1))
        started = top.startService()
        self.assertEqual(journal, ["start a"])
        clock.advance(1)
        self.assertEqual(journal, ["start a", "start a done", "start b"])
        clock.advance(1)
        self.assertTrue(started.called)
        journal.clear()
        stopped = top.stopService()
        clock.advance(1)
        self.assertEqual(journal, ["stop b", "stop b done", "stop a"])
        self.assertFalse(stopped.called)
        clock.advance(1)
        self.assertTrue(stopped.called)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_failing_stop_is_reported_and_the_others_still_stop(self):
        """A child that fails to stop: the rest stop, and the caller gets the failure."""
        clock, journal = task.Clock(), []
        top = self.tree(Part("a", journal, clock), Part("b", journal, clock, fail="stop"))
        top.startService()
        clock.advance(0)
        stopped = top.stopService()
        clock.advance(0)
        clock.advance(0)
        self.assertIn("stop a done", journal)
        self.failureResultOf(stopped, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_failing_start_does_not_keep_the_others_from_starting(self):
        clock, journal = task.Clock(), []
        top = self.tree(Part("a", journal, clock, fail="start"), Part("b", journal, clock))
        started = top.startService()
        clock.advance(0)
        clock.advance(0)
        self.assertIn("start b done", journal)
        self.failureResultOf(started, RuntimeError)
        self.flushLoggedErrors(RuntimeError)

    def test_a_refused_start_is_one_line_and_the_rest_never_start_nor_stop(self):
        """A child raising StartRefused: one error line (no traceback), the
        children after it are not started, and stopping skips them."""
        clock, journal, events = task.Clock(), [], []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        class Refusing(Part):
            def startService(self) -> defer.Deferred:
                service.Service.startService(self)
                raise StartRefused("port 9 is held by another program", 71)

        top = self.tree(Part("a", journal, clock), Refusing("r", journal, clock),
                        Part("b", journal, clock))
        started = top.startService()
        clock.advance(0)
        failure = self.failureResultOf(started, StartRefused)
        self.assertEqual(failure.value.status, 71)
        self.assertNotIn("start b", journal)
        lines = [e for e in events if e.get("log_namespace", "").endswith("OrderedMultiService")]
        self.assertEqual([formatEvent(e) for e in lines], ["port 9 is held by another program"])
        self.assertNotIn("log_failure", lines[0])
        journal.clear()
        stopped = top.stopService()
        clock.advance(0)
        self.assertTrue(stopped.called)
        self.assertEqual(journal, ["stop r", "stop r done", "stop a", "stop a done"])


class MakeServiceTests(unittest.TestCase):
    def options(self, *extra: str) -> tap.Options:
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="dirobserver-tree-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        path = write_config(tmp, {"s": {"active": "true", "directory": tmp, "queue": "q"}},
                            {"redis_server": "127.0.0.1", "redis_port": 6399})
        options = tap.Options()
        options.parseOptions([f"--config={path}", *extra])
        return options

    def test_the_tree_holds_writer_core_and_reloader(self):
        """makeService builds the parts in start order and opens nothing."""
        tree = tap.makeService(self.options())
        self.assertIsInstance(tree, DirObserver)
        self.assertEqual([type(c) for c in tree],
                         [RedisWriter, ObserverService, ReloadService, SystemdService])
        self.assertFalse(tree.running)
        self.assertIsNone(tree.core.watcher)

    def test_metrics_service_comes_first(self):
        """First: a port it cannot listen on stops the start before anything is watched."""
        tree = tap.makeService(self.options("--metrics=tcp:0:interface=127.0.0.1", "--embedded-redis"))
        self.assertEqual([type(c) for c in tree],
                         [MetricsService, EmbeddedRedis, RedisWriter, ObserverService, ReloadService,
                          SystemdService])

    def test_embedded_redis_comes_first(self):
        tree = tap.makeService(self.options("--embedded-redis"))
        self.assertEqual([type(c) for c in tree],
                         [EmbeddedRedis, RedisWriter, ObserverService, ReloadService, SystemdService])


@pytest.mark.process
def test_exit_status_after_shutdown_runs_every_other_exit_handler(tmp_path: Path) -> None:
    """The status is the one asked for, and handlers registered before still run, once."""
    script = textwrap.dedent(
        """
        import atexit, sys
        atexit.register(lambda: print("registered before", flush=True))
        from dirobserver.app import exits
        atexit.register(lambda: print("registered after", flush=True))
        exits.exit_after_shutdown(exits.EXIT_WATCHDOG)
        exits.exit_after_shutdown(exits.EXIT_NO_INOTIFY)  # the first one wins
        print("main done", flush=True)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=30)
    assert result.returncode == 70, result
    assert result.stdout.splitlines() == ["main done", "registered after", "registered before"]


class CleanStopSignalsTests(unittest.TestCase):
    """exits.CleanStopSignals: SIGTERM and SIGINT stop the reactor without a death by signal."""

    def test_only_the_reactors_handlers_are_replaced_and_put_back(self):
        import signal

        from dirobserver.app import exits

        class Reactor:
            def __init__(self) -> None:
                self.called: list[object] = []

            def sigTerm(self, number, frame) -> None:
                raise AssertionError("the reactor's own handler ran")

            def stop(self) -> None:
                pass

            def callFromThread(self, f, *args) -> None:
                self.called.append(f)

        reactor = Reactor()
        before_term, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        self.addCleanup(signal.signal, signal.SIGTERM, before_term)
        signal.signal(signal.SIGTERM, reactor.sigTerm)
        clean = exits.CleanStopSignals(reactor)
        clean.install()
        handler = signal.getsignal(signal.SIGTERM)
        self.assertNotEqual(handler, reactor.sigTerm)
        self.assertEqual(signal.getsignal(signal.SIGINT), before_int)  # not the reactor's: left alone
        handler(signal.SIGTERM, None)
        self.assertEqual(reactor.called, [reactor.stop])
        clean.restore()
        self.assertEqual(signal.getsignal(signal.SIGTERM), reactor.sigTerm)
        self.assertEqual(signal.getsignal(signal.SIGINT), before_int)


def test_embedded_server_output_reaches_the_callbacks_line_by_line() -> None:
    """Chunks become lines (blank ones dropped); the unfinished last line comes before the end."""
    from twisted.python.failure import Failure

    from dirobserver.app.embedded_process import ServerOutput

    heard: list[object] = []
    output = ServerOutput(on_line=lambda fd, line: heard.append((fd, line)), on_ended=heard.append)
    output.childDataReceived(1, b"first li")
    output.childDataReceived(1, b"ne\r\n\nsecond\n")
    output.childDataReceived(2, b"warned")
    assert heard == [(1, "first line"), (1, "second")]
    ended = Failure(RuntimeError("gone"))
    output.processEnded(ended)
    assert heard == [(1, "first line"), (1, "second"), (2, "warned"), ended]


def test_settings_parse_for_the_tree() -> None:
    """The sample configuration builds a tree (with the embedded server's defaults)."""
    settings = config.load(str(REPO_ROOT / "directory_observer.ini"), redis_optional=True)
    from twisted.internet import reactor

    tree = DirObserver(settings, reactor, embedded=True)
    assert len(tree.core.monitors) == len(settings.sections)


def test_embedded_redis_refuses_sentinels_and_tls(tmp_path, capsys):
    """--embedded-redis runs one plain server: with Sentinels or TLS it is one line and 78."""
    import pytest

    for common in ({"redis_sentinels": "127.0.0.1:26379", "redis_sentinel_master": "m"},
                   {"redis_tls": "true", "redis_tls_verify": "false"}):
        path = write_config(tmp_path, {"s": {"active": "true", "directory": tmp_path, "queue": "q"}},
                            common)
        with pytest.raises(SystemExit) as exited:
            tap.Options().parseOptions([f"--config={path}", "--embedded-redis"])
        assert exited.value.code == 78
        assert capsys.readouterr().err == (
            "dirobserver: --embedded-redis runs one plain server; remove redis_sentinels and "
            "redis_tls or drop the flag\n")
