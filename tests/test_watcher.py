"""
The inotify layer, against real directories and the real reactor.

These prove the two Twisted defects are fixed in L{dirobserver.sources.inotify}: the
end of one watch (deletion, move) no longer ends the others, and a kernel
queue overflow is reported instead of dropped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from dirobserver.sources.inotify import InotifySource
from dirobserver.sources.interface import WatchError
from dirobserver.sources.masks import IN_DELETE_SELF, IN_ISDIR, IN_MOVE_SELF
from dirobserver.sources.overflow_span import OverflowSpan


class RecordingSink:
    """A sink that records what it receives, and fires waiters."""

    def __init__(self) -> None:
        self.names: list[bytes] = []
        self.masks: list[int] = []
        self.ended: list[int] = []
        self.read_times: list[float] = []
        #: how many names had come when each loss of events was reported
        self.lost: list[int] = []
        self._waiters: list[tuple[object, defer.Deferred]] = []

    def file_events(self, batch, read_time) -> None:
        self.read_times.append(read_time)
        for name, mask in batch:
            self.names.append(name)
            self.masks.append(mask)
        self._check()

    def watch_ended(self, mask: int) -> None:
        self.ended.append(mask)
        self._check()

    def events_lost(self) -> None:
        self.lost.append(len(self.names))

    def wait(self, predicate) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((predicate, d))
        self._check()
        return d.addTimeout(5, reactor)

    def _check(self) -> None:
        for item in list(self._waiters):
            predicate, d = item
            if predicate(self):
                self._waiters.remove(item)
                # Fire on a later turn: the test goes on once the watcher has
                # finished dispatching (and logging) this batch.
                reactor.callLater(0, d.callback, self)


class WatcherTests(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="dirobserver-test-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.overflows = 0
        self.watcher = InotifySource(reactor, on_overflow=self._overflow)
        self.watcher.startReading()
        self.addCleanup(self.watcher.close)

    def _overflow(self) -> None:
        self.overflows += 1

    def mkdir(self, name: str) -> bytes:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return os.fsencode(path)

    @defer.inlineCallbacks
    def test_created_and_moved_in_files_are_reported(self):
        """A file created in, or moved into, a watched directory is reported by name."""
        d = self.mkdir("a")
        sink = RecordingSink()
        self.watcher.add(d, sink)
        open(os.path.join(d, b"one"), "w").close()
        outside = os.path.join(os.fsencode(self.root), b"outside")
        open(outside, "w").close()
        os.rename(outside, os.path.join(d, b"two"))
        yield sink.wait(lambda s: len(s.names) >= 2)
        self.assertEqual(sink.names, [b"one", b"two"])

    @defer.inlineCallbacks
    def test_undecodable_and_odd_names_arrive_as_bytes(self):
        """Names with spaces, newlines and non-UTF-8 bytes arrive unchanged."""
        d = self.mkdir("odd")
        sink = RecordingSink()
        self.watcher.add(d, sink)
        names = [b"with space", b"new\nline", b"\xff\xfelatin1-\xe9"]
        for name in names:
            open(os.path.join(d, name), "w").close()
        yield sink.wait(lambda s: len(s.names) >= 3)
        self.assertEqual(sink.names, names)

    @defer.inlineCallbacks
    def test_subdirectory_creation_is_flagged_as_directory(self):
        """The mask says a new entry is a directory: no stat needed."""
        d = self.mkdir("p")
        sink = RecordingSink()
        self.watcher.add(d, sink)
        os.mkdir(os.path.join(d, b"sub"))
        yield sink.wait(lambda s: len(s.names) >= 1)
        self.assertTrue(sink.masks[0] & IN_ISDIR)

    @defer.inlineCallbacks
    def test_deleting_one_directory_keeps_the_others_watched(self):
        """
        Twisted's INotify ends every watch when one watched directory is
        deleted (loseConnection on IN_DELETE_SELF); ours ends only that one.
        """
        gone, kept = self.mkdir("gone"), self.mkdir("kept")
        gone_sink, kept_sink = RecordingSink(), RecordingSink()
        self.watcher.add(gone, gone_sink)
        self.watcher.add(kept, kept_sink)
        os.rmdir(gone)
        yield gone_sink.wait(lambda s: s.ended)
        self.assertTrue(gone_sink.ended[0] & IN_DELETE_SELF)
        open(os.path.join(kept, b"after-delete"), "w").close()
        yield kept_sink.wait(lambda s: s.names)
        self.assertEqual(kept_sink.names, [b"after-delete"])
        self.assertTrue(self.watcher.connected)
        self.assertEqual(self.watcher.watch_count(), 1)

    @defer.inlineCallbacks
    def test_moved_directory_ends_its_watch_only(self):
        """A watched directory renamed away is no longer watched; others go on."""
        moved, kept = self.mkdir("moved"), self.mkdir("kept2")
        moved_sink, kept_sink = RecordingSink(), RecordingSink()
        self.watcher.add(moved, moved_sink)
        self.watcher.add(kept, kept_sink)
        elsewhere = os.path.join(os.fsencode(self.root), b"elsewhere")
        os.rename(moved, elsewhere)
        yield moved_sink.wait(lambda s: s.ended)
        self.assertTrue(moved_sink.ended[0] & IN_MOVE_SELF)
        # The kernel watch followed the inode; it must have been removed.
        open(os.path.join(elsewhere, b"not-reported"), "w").close()
        open(os.path.join(kept, b"reported"), "w").close()
        yield kept_sink.wait(lambda s: s.names)
        self.assertEqual(moved_sink.names, [])
        self.assertEqual(kept_sink.names, [b"reported"])

    @defer.inlineCallbacks
    def test_two_sinks_share_one_watch(self):
        """Two sections on the same directory both get every event."""
        d = self.mkdir("shared")
        first, second = RecordingSink(), RecordingSink()
        wd1 = self.watcher.add(d, first)
        wd2 = self.watcher.add(d, second)
        self.assertEqual(wd1, wd2)
        open(os.path.join(d, b"f"), "w").close()
        yield second.wait(lambda s: s.names)
        self.assertEqual(first.names, [b"f"])
        self.watcher.remove(wd1, first)
        open(os.path.join(d, b"g"), "w").close()
        yield second.wait(lambda s: len(s.names) >= 2)
        self.assertEqual(first.names, [b"f"])

    def test_missing_directory_and_file_are_refused_with_errno(self):
        """A missing path or a file cannot be watched: WatchError with errno."""
        with self.assertRaises(WatchError) as missing:
            self.watcher.add(os.fsencode(os.path.join(self.root, "nope")), RecordingSink())
        self.assertEqual(missing.exception.errno, 2)
        path = os.path.join(self.root, "file")
        open(path, "w").close()
        with self.assertRaises(WatchError) as not_dir:
            self.watcher.add(os.fsencode(path), RecordingSink())
        self.assertEqual(not_dir.exception.errno, 20)
        self.assertIn("cannot watch", str(not_dir.exception))

    @defer.inlineCallbacks
    def test_a_failing_sink_does_not_stop_the_reading(self):
        """An exception in one sink is logged; later events still arrive."""
        d = self.mkdir("faulty")

        class Faulty(RecordingSink):
            def file_events(self, batch, read_time):
                super().file_events(batch, read_time)
                if any(name == b"boom" for name, _ in batch):
                    raise RuntimeError("boom")

        sink = Faulty()
        self.watcher.add(d, sink)
        open(os.path.join(d, b"boom"), "w").close()
        open(os.path.join(d, b"after"), "w").close()
        yield sink.wait(lambda s: len(s.names) >= 2)
        self.assertEqual(sink.names, [b"boom", b"after"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @pytest.mark.process
    @defer.inlineCallbacks
    def test_queue_overflow_is_reported(self):
        """
        More events than max_queued_events while the reactor does not read:
        the kernel drops events and queues IN_Q_OVERFLOW, which Twisted
        discards; our watcher counts it, hands over every event queued before
        it, tells the sink that events were lost, and calls on_overflow.
        """
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            limit = int(f.read())
        d = self.mkdir("flood")
        sink = RecordingSink()
        self.watcher.add(d, sink)
        # Created by a child process while this reactor is busy waiting for
        # it, so nothing is read until the queue has overflowed.  Names of
        # 24 bytes (48 per event: not a divisor of a read) put the overflow
        # inside a read, after events that must be handed over before it.
        subprocess.run(
            [sys.executable, "-c",
             "import os,sys\n"
             "d=sys.argv[1]\n"
             "for i in range(int(sys.argv[2])):\n"
             "    os.close(os.open(os.path.join(d, 'a-longer-file-name-%05d' % i), os.O_CREAT|os.O_WRONLY))\n",
             os.fsdecode(d), str(limit + 2000)],
            check=True,
        )
        for _ in range(200):
            if self.overflows:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)  # the polling interval
        self.assertEqual(self.overflows, 1)
        self.assertEqual(self.watcher.overflows, 1)
        self.assertLess(len(sink.names), limit + 2000)
        # The kernel kept the first max_queued_events events: the sink had
        # every one of them when it was told of the loss.
        self.assertEqual(sink.lost, [limit])
        self.assertEqual(sink.names[:sink.lost[0]],
                         [b"a-longer-file-name-%05d" % i for i in range(sink.lost[0])])


    @pytest.mark.process
    @defer.inlineCallbacks
    def test_events_queued_behind_an_unread_overflow_come_before_the_loss(self):
        """
        The kernel queues its overflow event once: events queued behind it
        while it is unread may have lost their successors with no second
        one.  The loss is told after them (they are no better than it).
        """
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            limit = int(f.read())
        d = self.mkdir("flood")
        sink = RecordingSink()
        self.watcher.add(d, sink)
        create = ("import os,sys\n"
                  "d=sys.argv[1]\n"
                  "for i in range(int(sys.argv[2])):\n"
                  "    os.close(os.open(os.path.join(d, sys.argv[3] % i), os.O_CREAT|os.O_WRONLY))\n")
        # Names of 23 bytes: 48 bytes an event.  The reactor reads nothing
        # while this test's own code runs.
        subprocess.run([sys.executable, "-c", create, os.fsdecode(d), str(limit + 100),
                        "a-longer-file-name-%05d"], check=True)
        # Room for more, the overflow event still unread: a reader that was
        # slow, not stopped.  (These thousand events are dropped here.)
        os.read(self.watcher.fileno(), 1000 * 48)
        subprocess.run([sys.executable, "-c", create, os.fsdecode(d), "500", "late-file-name-%05d-xx"],
                       check=True)
        for _ in range(500):
            if self.overflows:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)  # the polling interval
        self.assertEqual(self.overflows, 1)
        late = [b"late-file-name-%05d-xx" % i for i in range(500)]
        self.assertEqual(sink.names[sink.lost[0] - 500:sink.lost[0]], late)


class FailingCalls:
    """Stands in for libc: opens a real descriptor, refuses every watch."""

    def __init__(self, code: int) -> None:
        from dirobserver.sources.inotify_calls import LIBC_INOTIFY

        self._real = LIBC_INOTIFY
        self.code = code

    def init(self) -> int:
        return self._real.init()

    def add_watch(self, fd: int, path: bytes, mask: int) -> int:
        raise WatchError(self.code, os.strerror(self.code), path)

    def rm_watch(self, fd: int, wd: int) -> None:
        self._real.rm_watch(fd, wd)


class SeamTests(unittest.TestCase):
    """The event-source seams: masks per sink, read times, replaceable libc."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="dirobserver-test-")
        self.addCleanup(shutil.rmtree, self.root, True)

    def watcher(self, **kwargs) -> InotifySource:
        watcher = InotifySource(reactor, **kwargs)
        watcher.startReading()
        self.addCleanup(watcher.close)
        return watcher

    def test_watch_limit_reached_is_one_clear_message(self):
        """ENOSPC (max_user_watches) injected through the libc seam names the sysctl."""
        import errno

        watcher = self.watcher(calls=FailingCalls(errno.ENOSPC))
        with self.assertRaises(WatchError) as refused:
            watcher.add(os.fsencode(self.root), RecordingSink())
        self.assertEqual(refused.exception.errno, errno.ENOSPC)
        self.assertIn("fs.inotify.max_user_watches", str(refused.exception))
        self.assertIn("watch limit", refused.exception.reason)

    @defer.inlineCallbacks
    def test_each_sink_gets_the_events_of_its_own_mask(self):
        """Two sinks on one directory, one also asking for IN_CLOSE_WRITE."""
        from dirobserver.sources.masks import IN_CREATE, WATCH_MASK

        in_close_write = 0x00000008
        watcher = self.watcher()
        d = os.fsencode(self.root)
        plain, closing = RecordingSink(), RecordingSink()
        before = time.time()
        wd1 = watcher.add(d, plain)
        wd2 = watcher.add(d, closing, WATCH_MASK | in_close_write)
        self.assertEqual(wd1, wd2)
        with open(os.path.join(d, b"f"), "w") as f:
            f.write("x")
        yield closing.wait(lambda s: len(s.names) >= 2)
        self.assertEqual(closing.names, [b"f", b"f"])
        self.assertTrue(closing.masks[0] & IN_CREATE and closing.masks[1] & in_close_write)
        self.assertEqual(plain.names, [b"f"])
        self.assertTrue(plain.masks[0] & IN_CREATE)
        # Every batch carries the time it was read.
        self.assertTrue(all(before <= t <= time.time() for t in closing.read_times))
        # Without the closing sink, the kernel stops reporting closes.
        watcher.remove(wd2, closing)
        with open(os.path.join(d, b"g"), "w") as f:
            f.write("x")
        yield plain.wait(lambda s: len(s.names) >= 2)
        # A later file's creation comes after anything the kernel said of g.
        with open(os.path.join(d, b"h"), "w"):
            pass
        yield plain.wait(lambda s: b"h" in s.names)
        self.assertEqual(plain.names, [b"f", b"g", b"h"])
        self.assertEqual(closing.names, [b"f", b"f"])


class OverflowSpanTests(unittest.SynchronousTestCase):
    """The bytes read after an overflow event before its loss is handled."""

    def test_the_loss_is_due_once_what_was_queued_behind_it_is_read(self):
        span = OverflowSpan()
        span.read(100)
        self.assertFalse(span.due())
        span.marked(queued=250)  # in this read; 250 bytes more in the kernel
        self.assertFalse(span.due())
        span.read(200)
        self.assertFalse(span.due())
        span.read(200)
        self.assertTrue(span.due())
        self.assertFalse(span.due())  # once
        self.assertFalse(span.open)

    def test_nothing_queued_behind_it_is_due_with_its_own_read(self):
        span = OverflowSpan()
        span.read(100)
        span.marked(queued=0)
        self.assertTrue(span.due())

    def test_a_second_overflow_within_the_span_moves_its_end(self):
        span = OverflowSpan()
        span.read(100)
        span.marked(queued=100)
        span.read(100)
        span.marked(queued=300)  # the queue filled again behind the first
        self.assertFalse(span.due())
        span.read(300)
        self.assertTrue(span.due())
