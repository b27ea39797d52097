"""
L{dirobserver.ops.logs}: the JSON line, the level filter, the hand-over to
twistd's C{--logger}, and a real twistd (foreground and daemon) running a
test-only subcommand (C{tests/kit/logs_tap.py}) that uses the module exactly as
C{dirobserver/app/tap.py} does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from twisted.internet import defer, reactor, task
from twisted.logger import FilteringLogObserver, Logger, LogLevel
from twisted.scripts._twistd_unix import ServerOptions, UnixAppLogger
from twisted.trial import unittest

from dirobserver.ops import logs
from tests.kit import REPO_ROOT, logs_tap, twistd_path, wait_until


def capture(emit) -> list[dict]:
    """The events that C{emit(log)} sends through a L{Logger}."""
    events: list[dict] = []
    emit(Logger(namespace="dirobserver.test", observer=events.append))
    return events


class ParseTests(unittest.TestCase):
    def test_every_choice(self):
        for name in ("debug", "info", "warn", "error", "critical"):
            self.assertEqual(logs.parse(name, "text").level, LogLevel.lookupByName(name))
        self.assertEqual(logs.parse("WARNING", " JSON "), logs.LogSettings(LogLevel.warn, "json"))
        self.assertEqual(logs.LogSettings(), logs.parse("info", "text"))

    def test_bad_values_are_one_line_naming_the_choices(self):
        with self.assertRaises(logs.LogOptionsError) as e:
            logs.parse("verbose", "text")
        self.assertEqual(str(e.exception), "--log-level=verbose: use one of debug, info, warn, error, critical")
        with self.assertRaises(logs.LogOptionsError) as e:
            logs.parse("info", "xml")
        self.assertEqual(str(e.exception), "--log-format=xml: use one of text, json")


class JsonLineTests(unittest.TestCase):
    def test_keys_and_values(self):
        before = time.time()
        [event] = capture(lambda log: log.warn("Watching {path} ({n} files)", path="/srv/in", n=3))
        line = logs.json_line(event)
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(set(record), {"time", "level", "namespace", "message"})
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["namespace"], "dirobserver.test")
        self.assertEqual(record["message"], "Watching /srv/in (3 files)")
        stamp = datetime.fromisoformat(record["time"])
        self.assertEqual(stamp.utcoffset().total_seconds(), 0)
        self.assertAlmostEqual(stamp.timestamp(), event["log_time"], places=5)
        self.assertTrue(before - 1 <= stamp.timestamp() <= time.time() + 1)

    def test_failure_goes_in_its_own_key(self):
        def emit(log: Logger) -> None:
            try:
                raise ZeroDivisionError("divided")
            except ZeroDivisionError:
                log.failure("Listing {section} failed", section="stage1")

        [event] = capture(emit)
        line = logs.json_line(event)
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(record["message"], "Listing stage1 failed")
        self.assertEqual(record["level"], "critical")
        self.assertIn("Traceback", record["failure"])
        self.assertIn("ZeroDivisionError: divided", record["failure"])

    def test_undecodable_file_names_stay_ascii_and_round_trip(self):
        name = b"\xff\xfe.dat".decode("utf-8", "surrogateescape") + " caf\u00e9"
        [event] = capture(lambda log: log.info("New file {name}", name=name))
        line = logs.json_line(event)
        line.encode("ascii")  # raises if not
        self.assertEqual(json.loads(line)["message"], f"New file {name}")


class TempFiles:
    def temp_file(self) -> Path:
        """A path in a fresh directory removed after the test."""
        directory = tempfile.mkdtemp(prefix="test-logs-")
        self.addCleanup(shutil.rmtree, directory)
        return Path(directory) / "x.log"


class BuildObserverTests(TempFiles, unittest.TestCase):
    def emit_every_level(self, observer) -> None:
        log = Logger(namespace="dirobserver.test", observer=observer)
        for level in ("debug", "info", "warn", "error", "critical"):
            getattr(log, level)("at {lvl}", lvl=level)

    def test_level_filter_on_a_log_file(self):
        path = self.temp_file()
        settings = logs.LogSettings(LogLevel.warn, "json")
        observer = logs.build_observer(settings, {"logfile": str(path), "nodaemon": True})
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.SIG_DFL)
        self.emit_every_level(observer)
        levels = [json.loads(line)["level"] for line in path.read_text().splitlines()]
        self.assertEqual(levels, ["warn", "error", "critical"])

    @defer.inlineCallbacks
    def test_twisted_port_lines_only_at_debug(self):
        """A real port opened and closed: Twisted's "starting on" and "(TCP
        Port N Closed)" lines are kept at debug and dropped above."""
        from twisted.internet.protocol import Factory
        from twisted.logger import globalLogPublisher

        written = {}
        for level in (LogLevel.debug, LogLevel.info):
            path = self.temp_file()
            observer = logs.build_observer(logs.LogSettings(level, "text"), {"logfile": str(path)})
            self.addCleanup(signal.signal, signal.SIGUSR1, signal.SIG_DFL)
            globalLogPublisher.addObserver(observer)
            try:
                port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
                number = port.getHost().port
                yield port.stopListening()
                Logger(namespace="dirobserver.test").info("ours")
            finally:
                globalLogPublisher.removeObserver(observer)
            text = path.read_text()
            written[level.name] = [line for line in text.splitlines()
                                   if f"starting on {number}" in line or f"Port {number} Closed" in line
                                   or line.endswith("ours")]
        self.assertEqual(len(written["debug"]), 3, written)
        self.assertEqual(len(written["info"]), 1, written)
        self.assertTrue(written["info"][0].endswith("ours"), written)

    def test_text_format_is_twistds(self):
        path = self.temp_file()
        observer = logs.build_observer(logs.LogSettings(LogLevel.debug, "text"), {"logfile": str(path)})
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.SIG_DFL)
        self.emit_every_level(observer)
        lines = path.read_text().splitlines()
        self.assertEqual(len(lines), 5)
        self.assertTrue(lines[0].endswith("[dirobserver.test#debug] at debug"), lines[0])

    def test_standard_output_in_the_foreground(self):
        path = self.temp_file()
        with open(path, "w") as out:
            self.patch(sys, "stdout", out)
            for options in ({"nodaemon": True}, {"nodaemon": True, "logfile": "-"}):
                observer = logs.build_observer(logs.LogSettings(LogLevel.error, "json"), options)
                self.emit_every_level(observer)
        levels = [json.loads(line)["level"] for line in path.read_text().splitlines()]
        self.assertEqual(levels, ["error", "critical"] * 2)

    @defer.inlineCallbacks
    def test_sigusr1_rotates_the_log_file(self):
        """As twistd's own observer does: C{kill -USR1} starts a new file."""
        previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        path = self.temp_file()
        observer = logs.build_observer(logs.LogSettings(), {"logfile": str(path)})
        Logger(observer=observer).info("before")
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if Path(f"{path}.1").exists():
                break
            yield task.deferLater(reactor, 0.02, lambda: None)  # the polling interval
        self.assertTrue(Path(f"{path}.1").exists(), "SIGUSR1 did not rotate the log file")
        Logger(observer=observer).info("after")
        self.assertIn("before", Path(f"{path}.1").read_text())
        self.assertNotIn("before", path.read_text())
        self.assertIn("after", path.read_text())


class PluginServerOptions(ServerOptions):
    """twistd's own options, with the test subcommand instead of the plugin scan."""

    subCommands = [("logtest", None, logs_tap.Options, "log test")]


class ConfigureTests(TempFiles, unittest.TestCase):
    def setUp(self) -> None:
        self.patch(logs, "_pending", None)

    def parse(self, *argv: str) -> ServerOptions:
        config = PluginServerOptions()
        config.parseOptions(list(argv))
        return config

    def test_twistd_gets_our_factory(self):
        """
        Parsed by twistd's real ServerOptions: the subcommand's postOptions
        runs first, then twistd resolves the dotted name we set.
        """
        path = self.temp_file()
        config = self.parse("-n", f"--logfile={path}", "logtest", "--log-level=error", "--log-format=json")
        self.assertIs(config["logger"], logs.make_observer)
        self.assertIs(config.subOptions.parent, config)
        app_logger = UnixAppLogger(config)
        self.assertIs(app_logger._observerFactory, logs.make_observer)
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.SIG_DFL)
        observer = logs.make_observer()
        self.assertIsInstance(observer, FilteringLogObserver)
        log = Logger(namespace="x", observer=observer)
        log.warn("dropped")
        log.error("kept")
        self.assertEqual([json.loads(line)["message"] for line in path.read_text().splitlines()], ["kept"])

    def test_alone_it_only_checks(self):
        options = logs_tap.Options()
        options.parseOptions(["--log-level=debug"])
        self.assertIsNone(logs._pending)

    def test_a_logger_of_the_users_wins_when_nothing_is_asked(self):
        config = self.parse("--logger=twisted.logger.globalLogPublisher", "logtest")
        self.assertIsNot(config["logger"], logs.make_observer)
        self.assertIsNone(logs._pending)

    def assert_fails(self, message: str, *argv: str) -> None:
        with self.assertRaises(logs.LogOptionsError) as e:
            logs.configure(self.parse_plugin_only(*argv))
        self.assertEqual(str(e.exception), message)

    def parse_plugin_only(self, *argv: str) -> logs_tap.Options:
        """Parse up to the subcommand, then its options without postOptions."""
        config = PluginServerOptions()
        index = argv.index("logtest")
        config.parseOptions(list(argv[:index]))
        options = logs_tap.Options()
        options.postOptions = lambda: None
        options.parseOptions(list(argv[index + 1:]))
        options.parent = config
        return options

    def test_combinations_twistd_cannot_do(self):
        self.assert_fails(
            "--log-level and --log-format cannot be used with twistd's --logger",
            "--logger=twisted.logger.globalLogPublisher", "logtest", "--log-level=warn",
        )
        self.assert_fails(
            "--log-format=json writes to a file or standard output, not to --syslog",
            "--syslog", "logtest", "--log-format=json",
        )
        self.assert_fails(
            "a daemon cannot log to standard output: use -n or --logfile=PATH",
            "--logfile=-", "logtest",
        )
        self.assertIsNone(logs._pending)
        # The foreground may log to standard output.
        logs.configure(self.parse_plugin_only("-n", "--logfile=-", "logtest"))
        self.assertIsNotNone(logs._pending)


# --- a real twistd -------------------------------------------------------------


@pytest.fixture
def run_twistd(tmp_path: Path):
    """Run C{twistd ARGS} with the test subcommand; returns the CompletedProcess."""
    plugins = tmp_path / "dropin" / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "logtest_plugin.py").write_text(
        "from twisted.application.service import ServiceMaker\n"
        "logtest = ServiceMaker('logtest', 'tests.kit.logs_tap', 'log test', 'logtest')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "dropin"), str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(twistd_path()), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    return run


def json_records(text: str) -> list[dict]:
    """Every line as JSON (fails the test on a line that is not)."""
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.process
def test_foreground_default_is_info_text(run_twistd):
    result = run_twistd("-n", "--pidfile=", "logtest")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "starting up." in out and "Main loop terminated." in out
    assert "[tests.kit.logs_tap.EveryLevel#info] line at info from logtest" in out
    assert "line at debug" not in out
    assert "\tTraceback (most recent call last):" in out  # text keeps twistd's layout


@pytest.mark.process
def test_foreground_warn_drops_every_info_line_twistds_included(run_twistd):
    result = run_twistd("-n", "--pidfile=", "logtest", "--log-level=warn")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for gone in ("#info]", "#debug]", "starting up", "Main loop terminated", "Server Shut Down", "printed to stdout"):
        assert gone not in out, gone
    for kept in ("#warn] line at warn", "#error] line at error", "#critical] line at critical", "a legacy failure"):
        assert kept in out, kept


@pytest.mark.process
def test_foreground_json_every_line(run_twistd):
    result = run_twistd("-n", "--pidfile=", "logtest", "--log-format=json", "--log-level=debug")
    assert result.returncode == 0, result.stderr
    records = json_records(result.stdout)
    messages = [r["message"] for r in records]
    for expected in ("line at debug from logtest", "printed to stdout", "Main loop terminated.", "Server Shut Down."):
        assert expected in messages, expected
    assert any(m.startswith("twistd ") and m.endswith("starting up.") for m in messages)
    by_message = {r["message"]: r for r in records}
    assert by_message["line at debug from logtest"]["level"] == "debug"
    assert by_message["line at debug from logtest"]["namespace"] == "tests.kit.logs_tap.EveryLevel"
    assert "ZeroDivisionError: new style" in by_message["a new-style failure"]["failure"]
    legacy = by_message["a legacy failure"]
    assert legacy["level"] == "critical" and "KeyError: 'legacy style'" in legacy["failure"]
    assert not any("Traceback" in m for m in messages)
    for record in records:
        assert set(record) <= {"time", "level", "namespace", "message", "failure"}
        datetime.fromisoformat(record["time"])


@pytest.mark.process
def test_logfile_in_the_foreground_leaves_stdout_empty(run_twistd, tmp_path):
    result = run_twistd("-n", "--pidfile=", f"--logfile={tmp_path / 'x.log'}", "logtest", "--log-format=json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "line at info from logtest" in [r["message"] for r in json_records((tmp_path / "x.log").read_text())]


@pytest.mark.process
def test_daemon_writes_json_to_the_logfile(run_twistd, tmp_path):
    log, pid = tmp_path / "d.log", tmp_path / "d.pid"
    result = run_twistd(f"--pidfile={pid}", f"--logfile={log}", "logtest", "--log-format=json", "--log-level=warn")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    # The daemon stops itself; it removes its pidfile last.
    assert wait_until(lambda: log.exists() and not pid.exists(), 30, interval=0.05), \
        "the daemon did not stop itself"
    assert not pid.exists()
    records = json_records(log.read_text())
    assert [r["level"] for r in records] == ["warn", "error", "critical", "critical", "critical"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("-n", "logtest", "--log-level=loud"), "--log-level=loud: use one of debug, info, warn, error, critical"),
        (("--logfile=-", "logtest"), "a daemon cannot log to standard output: use -n or --logfile=PATH"),
    ],
)
@pytest.mark.process
def test_bad_options_are_one_line(run_twistd, args, message):
    result = run_twistd("--pidfile=", *args)
    assert result.returncode == 78
    assert result.stderr == f"logtest: {message}\n"
    assert result.stdout == ""
