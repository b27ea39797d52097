"""
The watchdog's timing logic, with a L{task.Clock} (no real waiting).

The probe files are real files in the watchdog's real probe directory; the
watcher is a stand-in that records what it is asked to watch, and the test
plays the kernel by calling C{file_events} (or not, to play a deaf inotify).
"""

from __future__ import annotations

import os

from twisted.internet import task
from twisted.trial import unittest

from dirobserver.sources.liveness import InotifyLivenessProbe


class StandInWatcher:
    """Records add/remove calls like L{dirobserver.sources.inotify.InotifySource}."""

    def __init__(self) -> None:
        self.added: list[bytes] = []
        self.removed: list[int] = []
        self.queued: list = []
        #: bytes of events read and not handed over (a burst being caught up)
        self.held = 0

    def add(self, path: bytes, sink, mask: int = 0) -> int:
        self.added.append(path)
        return len(self.added)

    def remove(self, wd: int, sink) -> None:
        self.removed.append(wd)

    def backlog(self) -> int:
        return self.held

    def drain(self) -> None:
        """Read what the kernel queued: here, the answers the test queued."""
        for sink, batch in self.queued:
            sink.file_events(batch, 0.0)
        self.queued = []


class InotifyLivenessProbeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.resets = 0
        self.deaths = 0
        self.watcher = StandInWatcher()
        self.dog = InotifyLivenessProbe(10.0, self.clock, self._reset, self._die)
        self.dog.start(self.watcher)
        self.addCleanup(self.dog.stop)

    def _reset(self) -> None:
        self.resets += 1
        self.watcher = StandInWatcher()
        self.dog.attach(self.watcher)

    def _die(self) -> None:
        self.deaths += 1

    def answer(self) -> None:
        """Play inotify: report the probe file that exists now."""
        names = os.listdir(os.fsencode(self.dog.directory))
        self.assertEqual(len(names), 1, "one probe file at a time")
        self.dog.file_events([(names[0], 0x100)], 0.0)

    def test_probe_directory_is_private_and_watched(self):
        """start() creates a private directory, watches it and probes at once."""
        self.assertTrue(os.path.isdir(self.dog.directory))
        self.assertIn("dirobserver-probe-", self.dog.directory)
        self.assertEqual(self.watcher.added, [os.fsencode(self.dog.directory)])
        self.assertEqual(self.dog.probes, 1)

    def test_a_quiet_but_healthy_inotify_never_trips(self):
        """Answered probes for far longer than the timeout: no reset, no exit."""
        for _ in range(100):
            self.answer()
            self.clock.advance(self.dog.interval)
        self.assertEqual((self.resets, self.deaths), (0, 0))
        self.assertEqual(self.dog.answers, 100)

    def test_unanswered_probe_recreates_the_watcher_once(self):
        """A probe not answered by the next tick resets the watcher, once per silence."""
        self.clock.advance(self.dog.interval)
        self.assertEqual(self.resets, 1)
        self.clock.advance(self.dog.interval)
        self.assertEqual(self.resets, 1)
        self.assertEqual(self.deaths, 0)
        # The new watcher watches the probe directory.
        self.assertEqual(self.watcher.added, [os.fsencode(self.dog.directory)])

    def test_reset_that_helps_avoids_the_exit(self):
        """After a reset, an answered probe ends the silence: no exit."""
        self.clock.advance(self.dog.interval)
        self.assertEqual(self.resets, 1)
        self.answer()
        for _ in range(20):
            self.clock.advance(self.dog.interval)
            self.answer()
        self.assertEqual(self.deaths, 0)

    def test_silence_for_the_timeout_gives_up(self):
        """No answer for monitor_inactivitytimeout seconds: on_dead is called once."""
        self.clock.advance(9.9)
        self.assertEqual(self.deaths, 0)
        self.clock.advance(self.dog.interval)
        self.assertEqual(self.deaths, 1)
        self.clock.advance(100)
        self.assertEqual(self.deaths, 1)

    def test_a_burst_being_caught_up_is_no_silence(self):
        """
        Events read and not handed over yet (a burst far longer than the
        timeout): the kernel answers, the probe's event is behind them; no
        reset, no exit, a new probe each tick, and the watcher is not
        drained by the tick (that would hold the reactor for the whole burst).
        """
        self.watcher.held = 64 * 1024
        for _ in range(30):
            self.clock.advance(self.dog.interval)
        self.assertEqual((self.resets, self.deaths), (0, 0))
        self.assertEqual(self.dog.probes, 31)
        self.assertTrue(self.dog.healthy())
        # Once caught up, a probe not answered is a silence again.
        self.watcher.held = 0
        self.clock.advance(self.dog.interval)
        self.clock.advance(self.dog.interval)
        self.assertEqual(self.resets, 1)

    def test_only_the_expected_probe_counts(self):
        """An unrelated name in the probe directory is not an answer."""
        self.dog.file_events([(b"something-else", 0x100)], 0.0)
        self.assertEqual(self.dog.answers, 0)
        self.clock.advance(self.dog.interval)
        self.assertEqual(self.resets, 1)

    def test_probe_directory_removed_is_recreated(self):
        """Someone deleting the probe directory does not blind the watchdog."""
        directory = self.dog.directory
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
        self.dog.watch_ended(0x400)
        self.assertTrue(os.path.isdir(directory))
        self.assertEqual(len(self.watcher.added), 2)

    def test_stop_removes_the_probe_directory(self):
        directory = self.dog.directory
        self.dog.stop()
        self.assertFalse(os.path.exists(directory))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answer_waiting_in_the_kernel_queue_counts(self):
        """
        After a suspension (SIGSTOP, paused VM) the tick runs before the
        reactor reads inotify: the watchdog reads the queue first, so a
        healthy observer is neither reset nor stopped.
        """
        names = os.listdir(os.fsencode(self.dog.directory))
        self.watcher.queued.append((self.dog, [(names[0], 0x100)]))
        self.clock.advance(60)  # far past the timeout, as after a long SIGSTOP
        self.assertEqual((self.resets, self.deaths), (0, 0))
        self.assertEqual(self.dog.answers, 1)

    def test_a_probe_built_with_earlier_resets_counts_on_from_them(self):
        """A probe replacing another (a reload changed the timeout) keeps the run's count."""
        dog = InotifyLivenessProbe(10.0, self.clock, self._reset, self._die, resets=3)
        dog.start(StandInWatcher())
        self.addCleanup(dog.stop)
        self.assertEqual(dog.resets, 3)
        self.clock.advance(dog.interval)
        self.assertEqual(dog.resets, 4)
