"""
What the events of a section that announces complete files mean
(dirobserver.announce.complete_files.CompleteFiles): batches of (name, mask) as the watcher
hands them over, real files for the names that need an lstat, and
twisted.internet.task.Clock for the waits.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import task
from twisted.trial import unittest

from dirobserver.announce.complete_files import CLOSED_MASK, SETTLE_MASK, CompleteFiles, section_mask
from dirobserver.announce.event import CREATED
from dirobserver.announce.settle import GRACE, TICK
from dirobserver.config import settings as config
from dirobserver.sources.masks import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_OPEN,
    WATCH_MASK,
)

T0 = 1000.0


def settings(directory: str, **keys: str) -> config.SectionSettings:
    text = "[common]\nredis_server=127.0.0.1\nredis_port=6379\n[s:common]\nactive=true\nqueue=q\n"
    text += f"directory={directory}\n" + "".join(f"{k}={v}\n" for k, v in keys.items())
    return config.parse(text, "test.ini").sections[0]


def created(name: bytes) -> list[tuple[bytes, int]]:
    """What open(O_CREAT) of a new file gives."""
    return [(name, IN_CREATE), (name, IN_OPEN)]


class CompleteFilesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dirobserver-complete-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.announced: list[tuple[str, str, float]] = []

    def files(self, **keys: str) -> CompleteFiles:
        section = settings(self.dir, **keys)
        full: list[int] = []
        complete = CompleteFiles(
            section, self.clock,
            lambda items, when: self.announced.extend((text, event, when) for text, event in items),
            full.append,
        )
        self.addCleanup(self.assertEqual, full, [])
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        self.addCleanup(complete.waiting.forget_all)
        return complete

    def names(self) -> list[str]:
        return [text for text, _event, _when in self.announced]

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def touch(self, name: str) -> None:
        with open(self.path(name), "w") as f:
            f.write("x")

    def test_masks_ask_for_opens_only_in_closed_mode_and_modifications_only_with_a_settle(self):
        self.assertEqual(section_mask(settings(self.dir)), WATCH_MASK)
        closed = section_mask(settings(self.dir, announce="closed"))
        self.assertEqual(closed, WATCH_MASK | CLOSED_MASK)
        self.assertFalse(closed & IN_MODIFY)
        settled = section_mask(settings(self.dir, settle="2"))
        self.assertEqual(settled, WATCH_MASK | SETTLE_MASK)
        self.assertFalse(settled & IN_OPEN)

    def test_closed_a_file_created_opened_and_closed_in_one_read_is_announced_at_its_close(self):
        files = self.files(announce="closed")
        files.file_events(created(b"a") + [(b"a", IN_MODIFY), (b"b", IN_CREATE), (b"b", IN_OPEN),
                                          (b"a", IN_CLOSE_WRITE)], T0)
        self.assertEqual(self.announced, [("a", CREATED, T0)])
        self.assertEqual(len(files.waiting), 1)  # b is still open
        files.file_events([(b"b", IN_CLOSE_WRITE)], T0 + 5)
        self.assertEqual(self.announced[1:], [("b", CREATED, T0 + 5)])
        self.assertEqual(len(files.waiting), 0)

    def test_closed_a_pair_split_by_a_read_waits_for_the_close(self):
        files = self.files(announce="closed")
        self.touch("split")  # a regular file with one name, as open(O_CREAT) makes
        files.file_events([(b"split", IN_CREATE)], T0)
        files.file_events([(b"split", IN_OPEN)], T0 + 0.001)
        self.clock.advance(10)
        self.assertEqual(self.announced, [])
        files.file_events([(b"split", IN_CLOSE_WRITE)], T0 + 10)
        self.assertEqual(self.names(), ["split"])

    def test_closed_names_linked_in_are_announced_at_once(self):
        files = self.files(announce="closed")
        self.touch("original")
        os.link(self.path("original"), self.path("hard"))
        os.symlink("original", self.path("symbolic"))
        os.mkfifo(self.path("fifo"))
        files.file_events([(b"hard", IN_CREATE), (b"symbolic", IN_CREATE), (b"fifo", IN_CREATE)], T0)
        self.assertEqual(sorted(self.names()), ["fifo", "hard", "symbolic"])
        self.assertEqual(len(files.waiting), 0)

    def test_closed_with_settle_a_link_is_complete_and_waits_for_the_settle(self):
        files = self.files(announce="closed", settle="2")
        self.touch("original")
        os.link(self.path("original"), self.path("hard"))
        files.file_events([(b"hard", IN_CREATE), (b"moved", IN_MOVED_TO)], T0)
        self.clock.advance(2 - TICK)
        self.assertEqual(self.announced, [])
        self.clock.advance(2 * TICK)
        self.assertEqual(sorted(self.names()), ["hard", "moved"])

    def test_closed_a_regular_file_linked_in_with_one_name_is_announced_after_the_grace(self):
        """An O_TMPFILE made visible with linkat: one name, and no open ever."""
        files = self.files(announce="closed")
        self.touch("tmpfile")
        files.file_events([(b"tmpfile", IN_CREATE)], T0)
        self.clock.advance(GRACE - TICK)
        self.assertEqual(self.announced, [])
        self.clock.advance(2 * TICK)
        self.assertEqual(self.names(), ["tmpfile"])
        self.assertGreaterEqual(self.announced[0][2], T0 + GRACE)

    def test_closed_a_file_gone_before_its_close_is_never_announced(self):
        files = self.files(announce="closed")
        files.file_events(created(b"deleted") + [(b"deleted", IN_DELETE)], T0)
        files.file_events(created(b"moved-away"), T0)
        files.file_events([(b"moved-away", IN_MOVED_FROM), (b"moved-away", IN_CLOSE_WRITE)], T0 + 1)
        # A name created with no open, gone before the lstat.
        files.file_events([(b"vanished", IN_CREATE)], T0 + 2)
        self.clock.advance(5)
        self.assertEqual(self.announced, [])
        self.assertEqual(len(files.waiting), 0)

    def test_closed_moved_in_is_complete_even_over_an_open_file_of_that_name(self):
        files = self.files(announce="closed")
        files.file_events(created(b"x"), T0)
        files.file_events([(b"x", IN_MOVED_TO), (b"y", IN_MOVED_TO)], T0 + 1)
        self.assertEqual(self.names(), ["x", "y"])
        self.assertEqual(len(files.waiting), 0)

    def test_closed_filters_and_subdirectories(self):
        files = self.files(announce="closed", ignore=r"^skip")
        files.file_events(created(b"skip-me") + [(b"skip-me", IN_CLOSE_WRITE), (b"sub", IN_CREATE | IN_ISDIR),
                                                (b"", IN_OPEN | IN_ISDIR)], T0)
        self.assertEqual(self.announced, [])
        self.assertEqual(len(files.waiting), 0)
        with_subdirectories = self.files(announce="closed", subdirectories="true")
        with_subdirectories.file_events([(b"sub", IN_CREATE | IN_ISDIR)], T0)
        self.assertEqual(self.names(), ["sub"])

    def test_closed_later_closes_of_an_announced_name_are_not_announced(self):
        files = self.files(announce="closed")
        files.file_events(created(b"a") + [(b"a", IN_CLOSE_WRITE)], T0)
        files.file_events([(b"a", IN_OPEN), (b"a", IN_CLOSE_WRITE)], T0 + 1)
        self.assertEqual(self.names(), ["a"])

    def test_closed_with_settle_rewritten_within_it_is_announced_once_after_the_last_change(self):
        files = self.files(announce="closed", settle="1")
        files.file_events(created(b"a") + [(b"a", IN_MODIFY), (b"a", IN_CLOSE_WRITE)], T0)
        self.clock.advance(0.5)
        files.file_events([(b"a", IN_OPEN), (b"a", IN_MODIFY)], T0 + 0.5)
        self.clock.advance(0.3)
        files.file_events([(b"a", IN_CLOSE_WRITE)], T0 + 0.8)
        self.clock.advance(0.99)
        self.assertEqual(self.announced, [])
        self.clock.advance(2 * TICK)
        self.assertEqual(len(self.announced), 1)
        text, event, when = self.announced[0]
        self.assertEqual((text, event), ("a", CREATED))
        self.assertGreaterEqual(when, T0 + 1.8)

    def test_closed_with_settle_an_open_file_is_not_announced_however_quiet(self):
        files = self.files(announce="closed", settle="1")
        files.file_events(created(b"a") + [(b"a", IN_MODIFY)], T0)
        self.clock.advance(60)
        self.assertEqual(self.announced, [])
        files.file_events([(b"a", IN_CLOSE_WRITE)], T0 + 60)
        self.clock.advance(1 + TICK)
        self.assertEqual(self.names(), ["a"])

    def test_created_with_settle_waits_for_quiet_after_the_last_change(self):
        files = self.files(settle="1")
        files.file_events([(b"a", IN_CREATE), (b"b", IN_MOVED_TO), (b"c", IN_CREATE)], T0)
        self.clock.advance(0.6)
        files.file_events([(b"a", IN_MODIFY), (b"c", IN_DELETE)], T0 + 0.6)
        self.clock.advance(0.3)
        files.file_events([(b"a", IN_ATTRIB)], T0 + 0.9)
        self.clock.advance(0.1 + TICK)
        self.assertEqual(self.names(), ["b"])
        self.clock.advance(0.8)
        self.assertEqual(self.names(), ["b"])
        self.clock.advance(0.1 + TICK)
        self.assertEqual(self.names(), ["b", "a"])
