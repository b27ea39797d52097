"""
The one rule for a settled file (L{dirobserver.util.quiet}): the settle
table, the poller and the listings agree on it because they all ask it.
"""

from __future__ import annotations

from twisted.trial import unittest

from dirobserver.util.quiet import is_quiet, quiet_at, quiet_since


class QuietTests(unittest.TestCase):
    def test_a_file_is_settled_once_quiet_for_exactly_settle_seconds(self):
        self.assertFalse(is_quiet(10.0, 3.0, 12.0))
        self.assertTrue(is_quiet(10.0, 3.0, 13.0))
        self.assertEqual(quiet_at(10.0, 3.0), 13.0)

    def test_the_listing_cut_keeps_a_file_changed_at_it(self):
        # A listing splits its sorted files at quiet_since: one changed then is settled.
        cut = quiet_since(13.0, 3.0)
        self.assertEqual(cut, 10.0)
        self.assertTrue(is_quiet(cut, 3.0, 13.0))

    def test_no_settle_means_settled_at_once(self):
        self.assertTrue(is_quiet(10.0, 0.0, 10.0))
        self.assertEqual(quiet_at(10.0, 0.0), 10.0)
