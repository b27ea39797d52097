"""
The polling event source, on real directories, its time driven by a Clock.

What a scan reports (new names once, directories flagged, names gone to the
sinks that ask), the first scan and a listing's names as the previous scan,
the wait for complete files (settle, closed), the end of a directory, the
hand-over to inotify, and that a scan looks (C{lstat}) at new names only.
"""

from __future__ import annotations

import os

from dirobserver.sources import polling as poller_module
from dirobserver.sources.interface import WatchError
from dirobserver.sources.masks import (
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    WATCH_MASK,
)
from dirobserver.sources.polling import Poller
from tests.kit.cases import ClockedDirectoryCase

INTERVAL = 2.0


class Sink:
    """Records what the poller reports."""

    def __init__(self) -> None:
        self.events: list[tuple[bytes, int, float]] = []
        self.ended: list[int] = []

    def file_events(self, batch, read_time) -> None:
        self.events += [(name, mask, read_time) for name, mask in batch]

    def watch_ended(self, mask: int) -> None:
        self.ended.append(mask)

    def events_lost(self) -> None:
        raise AssertionError("a poller loses no events")

    def take(self) -> list[tuple[bytes, int]]:
        """The (name, mask) pairs reported since the last take, sorted."""
        got, self.events = self.events, []
        return sorted((name, mask) for name, mask, _ in got)


class PollerTests(ClockedDirectoryCase):
    def setUp(self) -> None:
        super().setUp()
        self.ticks = 0

    def make(self, **kwargs) -> Poller:
        poller = Poller(self.clock, self.cooperator, INTERVAL, on_tick=self._ticked, **kwargs)
        self.addCleanup(poller.close)
        return poller

    def polled(self, **kwargs) -> tuple[Poller, Sink]:
        """A poller of the test's directory for one sink, past its first (silent) scan."""
        poller = self.make(**kwargs)
        sink = Sink()
        poller.add(self.path(), sink, WATCH_MASK)
        self.tick()
        return poller, sink

    def _ticked(self) -> None:
        self.ticks += 1

    def tick(self, seconds: float = INTERVAL) -> None:
        """Let C{seconds} pass, and every scan they start run to its end."""
        self.run_due(seconds)

    def touch(self, *names: str, data: bytes = b"x") -> None:
        for name in names:
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(data)

    def path(self) -> bytes:
        return os.fsencode(self.root)

    def test_new_names_are_reported_once_each(self):
        """The first scan is silent; then each new name once, directories flagged."""
        self.touch("before")
        poller, sink = self.polled()
        self.assertEqual(sink.take(), [])
        self.touch("a", "b")
        os.mkdir(os.path.join(self.root, "d"))
        self.tick()
        self.assertEqual(sink.take(), [(b"a", IN_MOVED_TO), (b"b", IN_MOVED_TO),
                                       (b"d", IN_MOVED_TO | IN_ISDIR)])
        self.tick()
        self.tick()
        self.assertEqual(sink.take(), [])
        self.assertEqual(self.ticks, 4)
        # Stamped with the time of their scan.
        self.touch("c")
        self.tick()
        self.assertEqual(sink.events, [(b"c", IN_MOVED_TO, self.clock.seconds())])

    def test_a_listing_is_the_previous_scan(self):
        """
        Names a listing saw are not reported; a name the listing did not see
        (made after it passed) is, even if an earlier scan saw it.
        """
        self.touch("listed", "missed")
        poller = self.make()
        sink = Sink()
        handle = poller.add(self.path(), sink, WATCH_MASK)
        self.tick()  # a first, silent, scan: it saw both
        poller.listed(handle, [b"listed"])
        self.tick()
        self.assertEqual(sink.take(), [(b"missed", IN_MOVED_TO)])
        # An empty previous scan: everything there is new (a new sub-directory).
        poller.listed(handle, ())
        self.tick()
        self.assertEqual(sink.take(), [(b"listed", IN_MOVED_TO), (b"missed", IN_MOVED_TO)])

    def test_names_gone_are_reported_to_sinks_that_ask(self):
        self.touch("a", "b")
        poller = self.make()
        asks, plain = Sink(), Sink()
        poller.add(self.path(), asks, WATCH_MASK | IN_DELETE)
        poller.add(self.path(), plain, WATCH_MASK)
        self.tick()
        os.unlink(os.path.join(self.root, "a"))
        self.touch("c")
        self.tick()
        self.assertEqual(asks.take(), [(b"a", IN_DELETE), (b"c", IN_MOVED_TO)])
        self.assertEqual(plain.take(), [(b"c", IN_MOVED_TO)])

    def test_with_settle_a_file_is_reported_once_unchanged_for_that_long(self):
        poller, sink = self.polled(settle=3.0)
        self.touch("slow", data=b"1")
        self.tick()  # t=4: first seen
        self.tick()  # t=6: unchanged for 2 s only
        self.assertEqual(sink.take(), [])
        self.touch("slow", data=b"12")  # written again: its wait starts again
        self.tick()  # t=8
        self.tick()  # t=10: unchanged for 2 s
        self.assertEqual(sink.take(), [])
        self.tick()  # t=12: unchanged for 4 s
        self.assertEqual(sink.take(), [(b"slow", IN_MOVED_TO)])
        self.tick()
        self.assertEqual(sink.take(), [])

    def test_closed_without_settle_waits_for_one_scan_unchanged(self):
        """A scan cannot see a close: a file is complete once two scans agree."""
        poller, sink = self.polled(closed=True)
        self.touch("f", data=b"1")
        os.mkdir(os.path.join(self.root, "d"))
        self.tick()
        self.assertEqual(sink.take(), [(b"d", IN_MOVED_TO | IN_ISDIR)])  # directories at once
        self.touch("f", data=b"12")
        self.tick()
        self.assertEqual(sink.take(), [])
        self.tick()
        self.assertEqual(sink.take(), [(b"f", IN_MOVED_TO)])

    def test_a_pending_file_deleted_is_never_reported(self):
        poller, sink = self.polled(settle=1.0)
        self.touch("gone")
        self.tick()
        os.unlink(os.path.join(self.root, "gone"))
        self.tick()
        self.tick()
        self.assertEqual(sink.take(), [])

    def test_a_scan_looks_at_new_names_only(self):
        """One lstat per new name; the names already known cost none."""
        self.touch(*(f"old{i}" for i in range(500)))
        poller, sink = self.polled()
        looked: list[bytes] = []
        real_lstat = os.lstat

        def counting_lstat(path, *args, **kwargs):
            looked.append(os.path.basename(path))
            return real_lstat(path, *args, **kwargs)

        self.patch(poller_module.os, "lstat", counting_lstat)
        self.touch("new1", "new2")
        self.tick()
        self.assertEqual(sorted(looked), [b"new1", b"new2"])
        self.assertEqual(len(sink.take()), 2)

    def test_a_directory_gone_or_replaced_ends_its_watch(self):
        gone = os.path.join(self.root, "gone")
        replaced = os.path.join(self.root, "replaced")
        locked = os.path.join(self.root, "locked")
        for d in (gone, replaced, locked):
            os.mkdir(d)
        poller = self.make()
        sinks = [Sink(), Sink(), Sink()]
        for d, sink in zip((gone, replaced, locked), sinks, strict=True):
            poller.add(os.fsencode(d), sink, WATCH_MASK)
        self.tick()
        os.rmdir(gone)
        os.rename(replaced, replaced + ".old")
        os.mkdir(replaced)
        os.chmod(locked, 0)
        self.addCleanup(os.chmod, locked, 0o700)
        if os.access(locked, os.R_OK):
            sinks.pop()  # root reads it anyway
        self.tick()
        self.assertEqual([s.ended for s in sinks],
                         [[IN_DELETE_SELF], [IN_DELETE_SELF | IN_MOVE_SELF], [IN_IGNORED]][:len(sinks)])
        self.assertEqual(len(poller), 3 - len(sinks))

    def test_add_refuses_what_cannot_be_polled(self):
        poller = self.make()
        self.touch("file")
        with self.assertRaises(WatchError) as missing:
            poller.add(os.path.join(self.path(), b"nothing"), Sink(), WATCH_MASK)
        with self.assertRaises(WatchError) as not_dir:
            poller.add(os.path.join(self.path(), b"file"), Sink(), WATCH_MASK)
        self.assertEqual((missing.exception.errno, not_dir.exception.errno), (2, 20))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retired_directory_is_scanned_once_more_then_dropped(self):
        """Handed over to inotify: what came before the watch is still reported."""
        poller = self.make()
        sink = Sink()
        handle = poller.add(self.path(), sink, WATCH_MASK)
        self.tick()
        self.touch("before-the-watch")
        poller.retire(handle)
        self.tick()
        self.assertEqual(sink.take(), [(b"before-the-watch", IN_MOVED_TO)])
        self.assertEqual(len(poller), 0)
        self.touch("after")
        self.tick()
        self.assertEqual(sink.take(), [])

    def test_a_directory_added_during_a_round_is_scanned_in_it(self):
        """A sub-directory found by a scan is scanned in the same round."""
        sub = os.path.join(self.root, "sub")
        poller = self.make()
        inner = Sink()

        class Adding(Sink):
            def file_events(self, batch, read_time) -> None:
                super().file_events(batch, read_time)
                handle = poller.add(os.fsencode(sub), inner, WATCH_MASK)
                poller.listed(handle, ())

        poller.add(self.path(), Adding(), WATCH_MASK)
        self.tick()
        os.mkdir(sub)
        self.touch("sub/inside")
        self.tick()
        self.assertEqual(inner.take(), [(b"inside", IN_MOVED_TO)])

    def test_close_leaves_no_timer(self):
        poller = Poller(self.clock, self.cooperator, INTERVAL)
        poller.add(self.path(), Sink(), WATCH_MASK)
        self.clock.advance(INTERVAL)  # a round under way
        poller.close()
        self.tick(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
