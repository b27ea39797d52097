"""
The collector around bulk building (L{dirobserver.util.gc_pause}): off while many
sections are built, one pass after, survivors frozen, and freed again by the
next batch once they are garbage.
"""

from __future__ import annotations

import gc
import weakref

from twisted.trial import unittest

from dirobserver.util.gc_pause import BULK, bulk


class Cycle:
    """An object only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me = self


class BulkTests(unittest.TestCase):
    def setUp(self) -> None:
        gc.collect()
        gc.unfreeze()
        self.addCleanup(gc.enable)
        self.addCleanup(gc.unfreeze)

    def test_a_few_sections_change_nothing(self):
        with bulk(BULK - 1):
            self.assertTrue(gc.isenabled())
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_many_sections_build_with_the_collector_off_then_freeze(self):
        with bulk(BULK):
            self.assertFalse(gc.isenabled())
            garbage = weakref.ref(Cycle())  # dropped at once: cyclic garbage
        self.assertTrue(gc.isenabled())
        self.assertIsNone(garbage())  # the pass after the batch freed it
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_what_a_batch_froze_is_freed_by_the_next_once_garbage(self):
        # A reload from many sections to a few: the old ones must not stay
        # frozen for good.
        with bulk(BULK):
            kept = Cycle()
        ref = weakref.ref(kept)
        del kept
        gc.collect()
        self.assertIsNotNone(ref())  # frozen: no pass sees it
        with bulk(1):
            self.assertFalse(gc.isenabled())
        self.assertIsNone(ref())

    def test_a_batch_within_a_batch_leaves_the_pass_to_the_outer_one(self):
        with bulk(BULK):
            with bulk(BULK):
                pass
            self.assertFalse(gc.isenabled())
        self.assertTrue(gc.isenabled())

    def test_an_error_in_the_batch_still_turns_the_collector_back_on(self):
        with self.assertRaises(ValueError):
            with bulk(BULK):
                raise ValueError("bad configuration")
        self.assertTrue(gc.isenabled())

