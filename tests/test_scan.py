"""
The compact entries of a listing (L{dirobserver.announce.scan}): one bytes key per
entry, sorted by modification time then by the path's bytes, packed, and
looked up without unpacking everything.
"""

from __future__ import annotations

import bisect
import os
import random
import shutil
import tempfile

from twisted.internet import task
from twisted.trial import unittest

from dirobserver.announce import scan
from dirobserver.announce.scan import (
    CHUNK,
    KEY_WIDTH,
    Entries,
    entry_key,
    key_path,
    key_seconds,
    merge,
    scan_directory,
    time_key,
)


def entries_of(keys: list[bytes], run: int = 700) -> tuple[Entries, int]:
    """Entries made by merging C{keys} cut into sorted runs; and the turns it took."""
    runs = [scan._pack(keys[i:i + run]) for i in range(0, len(keys), run)]
    out = Entries()
    turns = 1 + sum(1 for _ in merge(runs, out)) if runs else 0
    return out, turns


class KeyTests(unittest.TestCase):
    def test_keys_sort_by_time_then_by_the_bytes_of_the_path(self):
        items = [(2_000, b"a"), (1_000, b"z"), (1_000, b"b"), (-5, b"old"), (2_000, b"\xff"),
                 (1_000, b"b/c"), (0, b"")]
        keys = sorted(entry_key(ns, path) for ns, path in items)
        self.assertEqual([key_path(k) for k in keys], [b"old", b"", b"b", b"b/c", b"z", b"a", b"\xff"])

    def test_a_key_keeps_the_exact_bytes_of_a_name_that_is_not_utf8(self):
        name = b"caf\xe9-\xff\xfe.csv"
        key = entry_key(1_700_000_000_123_456_789, name)
        self.assertEqual(key_path(key), name)
        self.assertNotIn(b"\0", key)
        self.assertEqual(key_seconds(key), 1_700_000_000.123456789)

    def test_times_out_of_range_keep_the_width_and_sort_at_the_ends(self):
        late = entry_key(1 << 70, b"late")
        early = entry_key(-(1 << 70), b"early")
        for key in (late, early):
            self.assertEqual(len(key), KEY_WIDTH + len(key_path(key)))
        self.assertLess(early, entry_key(-(1 << 62), b"a"))
        self.assertGreater(late, entry_key(1 << 62, b"z"))

    def test_time_keys_bracket_the_files_modified_at_that_time(self):
        directory = tempfile.mkdtemp(prefix="dirobserver-scan-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "f")
        open(path, "w").close()
        for when in (1_700_000_000.123456, 1_000.5, 0.25):
            os.utime(path, (when, when))
            key = entry_key(os.stat(path).st_mtime_ns, b"f")
            self.assertLess(time_key(when), key)
            self.assertLess(key, time_key(when, through=True))
            self.assertGreater(time_key(when + 1e-6), key)
            self.assertLess(time_key(when - 1e-6, through=True), key)


class EntriesTests(unittest.TestCase):
    def keys(self, n: int, seed: int) -> list[bytes]:
        rng = random.Random(seed)
        # Few distinct times: many equal ones, told apart by their paths.
        return [entry_key(rng.randrange(50) * 1_000_000_000, b"f%d\xff" % i) for i in range(n)]

    def test_merged_runs_give_every_key_in_order_and_find_any_key(self):
        for n in (1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17):
            keys = self.keys(n, n)
            entries, _turns = entries_of(keys)
            ordered = sorted(keys)
            self.assertEqual(len(entries), n)
            self.assertEqual(list(entries.keys()), ordered)
            for probe in ordered[::97] + [ordered[-1], time_key(-1.0), time_key(10.0), time_key(99.0)]:
                self.assertEqual(entries.index(probe), bisect.bisect_left(ordered, probe))
                self.assertEqual(entries.index(probe, after=True), bisect.bisect_right(ordered, probe))
            for i in (0, n // 2, n - 1):
                self.assertEqual(entries.key(i), ordered[i])

    def test_slices_cross_segments(self):
        keys = self.keys(2 * CHUNK + 5, 1)
        entries, _turns = entries_of(keys)
        ordered = sorted(keys)
        for start, stop in ((0, 0), (CHUNK - 3, CHUNK + 3), (5, 2 * CHUNK + 5), (CHUNK, 10 * CHUNK),
                            (2 * CHUNK + 4, 2 * CHUNK + 5), (7, 3)):
            self.assertEqual(list(entries.keys(start, stop)), ordered[start:stop])
        with self.assertRaises(IndexError):
            entries.key(len(keys))

    def test_time_keys_split_equal_times_from_the_others(self):
        keys = self.keys(CHUNK + 500, 2)
        entries, _turns = entries_of(keys)
        at_seven = [k for k in sorted(keys) if key_seconds(k) == 7.0]
        start, stop = entries.index(time_key(7.0)), entries.index(time_key(7.0, through=True))
        self.assertEqual(list(entries.keys(start, stop)), at_seven)

    def test_the_merge_yields_between_segments_only(self):
        self.assertEqual(entries_of(self.keys(CHUNK - 1, 3))[1], 1)
        self.assertEqual(entries_of(self.keys(2 * CHUNK + 1, 3))[1], 3)

    def test_only_the_last_segment_may_be_short(self):
        entries = Entries()
        entries.append([entry_key(1, b"a")])
        with self.assertRaises(ValueError):
            entries.append([entry_key(2, b"b")])


class Tree:
    """A walker (L{scan.Walker}) that accepts every directory but C{skip}."""

    recursive = True

    def __init__(self) -> None:
        self.entered: list[bytes] = []

    def accepts_directory(self, name: bytes) -> bool:
        return name != b"skip"

    def enter(self, subdirectory: bytes) -> bool:
        self.entered.append(subdirectory)
        return True

    def wants_names(self) -> bool:
        return False

    def seen(self, subdirectory: bytes, names: list[bytes]) -> None:
        raise AssertionError("not polled: no names asked")


class ScanTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dirobserver-scan-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clock = task.Clock()
        self.turns = 0
        # One step per turn: the turns count the scan's yields.
        self.cooperator = task.Cooperator(terminationPredicateFactory=lambda: lambda: True,
                                          scheduler=self.schedule)

    def schedule(self, step):
        self.turns += 1
        return self.clock.callLater(0, step)

    def make(self, relative: bytes, mtime: float) -> None:
        path = os.path.join(os.fsencode(self.dir), relative)
        with open(path, "wb"):
            pass
        os.utime(path, (mtime, mtime))

    def scan(self, accepts=lambda name: True, subdirectories=False, walker=None) -> tuple[list[bytes], int]:
        self.turns = 0
        d = scan_directory(self.dir, accepts, subdirectories, self.cooperator, walker)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return [key_path(k) for k in self.successResultOf(d).keys()], self.turns

    def test_oldest_first_equal_times_by_name_and_names_as_they_are(self):
        self.make(b"new", 3000.0)
        self.make(b"b-\xff", 2000.0)
        self.make(b"a", 2000.0)
        self.make(b"old.working", 1000.0)
        os.mkdir(os.path.join(self.dir, "sub"))
        paths, turns = self.scan(accepts=lambda name: not name.endswith(".working"))
        self.assertEqual(paths, [b"a", b"b-\xff", b"new"])
        self.assertEqual(turns, 1)  # a small directory: read, sorted and merged in one go
        paths, _turns = self.scan(subdirectories=True)
        self.assertEqual(paths[:4], [b"old.working", b"a", b"b-\xff", b"new"])
        self.assertEqual(paths[4:], [b"sub"])  # made now: the newest

    def test_a_recursive_scan_orders_the_whole_tree_and_skips_ignored_directories(self):
        os.makedirs(os.path.join(self.dir, "x", "y"))
        os.mkdir(os.path.join(self.dir, "skip"))
        self.make(b"x/y/deep", 1000.0)
        self.make(b"top", 3000.0)
        self.make(b"x/mid", 2000.0)
        self.make(b"x/\xe9", 2000.0)
        self.make(b"skip/hidden", 500.0)
        tree = Tree()
        paths, _turns = self.scan(walker=tree)
        self.assertEqual(paths, [b"x/y/deep", b"x/mid", b"x/\xe9", b"top"])
        self.assertEqual(sorted(tree.entered), [b"x", b"x/y"])

    def test_a_large_directory_is_read_and_sorted_over_several_turns(self):
        n = 2 * CHUNK + 300
        rng = random.Random(4)
        times = [rng.randrange(100) + 1000.0 for _ in range(n)]
        for i, when in enumerate(times):
            self.make(b"f%05d" % i, when)
        paths, turns = self.scan()
        expected = [b"f%05d" % i for _when, i in sorted((when, i) for i, when in enumerate(times))]
        self.assertEqual(paths, expected)
        # A turn to start, one every CHUNK entries read, one between two
        # merged segments.
        self.assertEqual(turns, 1 + n // CHUNK + n // CHUNK)

    def test_an_unreadable_top_fails_with_its_error(self):
        d = scan_directory(os.path.join(self.dir, "missing"), lambda name: True, False, self.cooperator)
        self.clock.advance(0)
        self.failureResultOf(d, FileNotFoundError)
