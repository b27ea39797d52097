"""
The record of what was announced (announce_once) and the facts of a file
(extra_fields): values, the entries of held events, the identity of a file,
and the fields an event gets.  No process, no server (the record's writes
and lookups against a real server: tests/test_record_redis.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest

from dirobserver.announce.event import CREATED, EXISTS, EventEncoder
from dirobserver.announce.file_facts import GONE, FileFacts
from dirobserver.config import settings as config
from dirobserver.redis.queue_types import StreamQueue
from dirobserver.redis.record import HeldRecords, parse_value, record_entries, record_stamp, record_value, same_file


def section(directory: str, extra: str = "", once: bool = True) -> config.SectionSettings:
    text = ("[common]\nredis_server = 127.0.0.1\nredis_port = 6399\n"
            f"[s:common]\nactive = true\ndirectory = {directory}\nqueue = q\n"
            f"announce_once = {'true' if once else 'false'}\n" + extra)
    return config.parse(text, os.path.join(directory, "c.ini")).sections[0]


class RecordValueTests(unittest.TestCase):
    def test_a_value_says_device_inode_and_time_and_reads_back(self):
        value = record_value(2049, 123456, 1700000000.25)
        self.assertEqual(value, b"2049:123456:1700000000.25")
        self.assertEqual(parse_value(value), (2049, 123456, 1700000000.25))
        self.assertTrue(same_file(value, 2049, 123456))
        self.assertFalse(same_file(value, 2049, 12345))  # a prefix of the inode is another file
        self.assertFalse(same_file(None, 2049, 123456))

    def test_a_stamp_made_once_gives_the_same_values(self):
        for when in (1700000000.25, 1796514852.2252123, 5.0, 0.1 + 0.2):
            stamp = record_stamp(when)
            self.assertEqual(record_value(2049, 7, when, stamp), b"2049:7:%r" % when)
            self.assertEqual(record_value(2049, 7, when), record_value(2049, 7, when, stamp))
        looks = [(2049, 10, 3, 1.0), (0, 0, None, None), (5, 11, 0, 2.0)]
        self.assertEqual(record_entries([b"a", b"gone", b"c"], looks, 9.5),
                         [(b"a", record_value(2049, 10, 9.5)), (b"gone", b"0:0:9.5"),
                          (b"c", record_value(5, 11, 9.5))])

    def test_a_value_not_ours_is_no_record(self):
        for value in (None, b"", b"garbage", b"1:2", b"a:b:c"):
            self.assertIsNone(parse_value(value), value)


class HeldRecordsTests(unittest.TestCase):
    def test_a_field_is_held_until_every_event_of_it_is_released(self):
        held = HeldRecords()
        held.hold("k", [(b"a", b"1:1:1.0"), (b"a", b"1:2:2.0"), (b"b", b"1:3:1.0")])
        self.assertEqual(held.value("k", b"a"), b"1:2:2.0")  # the latest
        self.assertEqual(held.count(), 2)
        held.release("k", [(b"a", b"1:1:1.0")])
        self.assertTrue(held.holds("k", b"a"))
        held.release("k", [(b"a", b"1:2:2.0"), (b"b", b"1:3:1.0")])
        self.assertFalse(held.holds("k", b"a"))
        self.assertIsNone(held.value("k", b"b"))
        self.assertEqual(held.count(), 0)

    def test_the_latest_value_is_held_until_its_own_event_is_released(self):
        held = HeldRecords()
        held.hold("k", [(b"a", b"1:1:1.0")])
        held.hold("k", [(b"a", b"1:2:2.0")])
        self.assertEqual(held.value("k", b"a"), b"1:2:2.0")
        held.release("k", [(b"a", b"1:1:1.0")])  # the older event: the newer one is still held
        self.assertEqual(held.value("k", b"a"), b"1:2:2.0")
        # Two events of one file with one value: the first acknowledged
        # wrote that very value to Redis, which a listing then reads.
        held.hold("k", [(b"b", b"1:3:3.0"), (b"b", b"1:3:3.0")])
        held.release("k", [(b"b", b"1:3:3.0")])
        self.assertIsNone(held.value("k", b"b"))
        held.release("k", [(b"b", b"1:3:3.0"), (b"a", b"1:2:2.0")])
        self.assertEqual(held.count(), 0)

    def test_keys_are_apart(self):
        held = HeldRecords()
        held.hold("k1", [(b"a", b"1:1:1.0")])
        self.assertFalse(held.holds("k2", b"a"))
        held.release("k2", [(b"a", b"1:1:1.0")])  # nothing held there: no effect
        self.assertTrue(held.holds("k1", b"a"))


class FileFactsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.facts = FileFacts(section(self.dir, "extra_fields = mtime;id;size\n"))

    def write(self, name: str, data: bytes) -> None:
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)

    def test_fields_are_kept_in_their_documented_order(self):
        self.assertEqual(self.facts.fields, ("id", "size", "mtime"))
        self.assertEqual(self.facts.record, "q:announced")

    def test_the_same_file_keeps_its_id_and_another_file_gets_another(self):
        self.write("f", b"12345")
        first = self.facts.look(b"f")
        self.assertEqual(first[2], 5)
        file_id = self.facts.facts(b"f", first)[0]
        self.assertRegex(file_id, "^[0-9a-f]{24}$")
        self.write("f", b"more bytes")  # written again: the same file
        again = self.facts.look(b"f")
        self.assertEqual(self.facts.facts(b"f", again)[0], file_id)
        # Replaced by a new file of the same name (kept open so that its
        # inode cannot be the old one's).
        self.write("g", b"new")
        with open(os.path.join(self.dir, "g"), "rb"):
            os.replace(os.path.join(self.dir, "g"), os.path.join(self.dir, "f"))
            replaced = self.facts.look(b"f")
        self.assertNotEqual(replaced[1], first[1])
        self.assertNotEqual(self.facts.facts(b"f", replaced)[0], file_id)
        # The same inode under another name is another file too.
        os.rename(os.path.join(self.dir, "f"), os.path.join(self.dir, "h"))
        self.assertNotEqual(self.facts.facts(b"h", self.facts.look(b"h"))[0],
                            self.facts.facts(b"f", replaced)[0])

    def test_a_file_gone_has_no_size_nor_mtime_and_records_inode_zero(self):
        self.assertIs(self.facts.look(b"absent"), GONE)
        file_id, size, mtime = self.facts.facts(b"absent", GONE)
        self.assertEqual((size, mtime), (None, None))
        self.assertEqual(FileFacts.entry(b"absent", GONE, 5.0), (b"absent", b"0:0:5.0"))

    def test_looking_at_many_files_gives_what_looking_at_each_gives(self):
        self.write("f", b"12345")
        self.write("g", b"")
        os.symlink(os.path.join(self.dir, "nowhere"), os.path.join(self.dir, "dangling"))
        os.mkdir(os.path.join(self.dir, "sub"))
        os.symlink("../f", os.path.join(self.dir, "sub", "relative"))  # followed from its own directory
        paths = [b"f", b"absent", b"dangling", b"g", b"sub/relative"]
        looks = self.facts.look_all(paths)
        self.assertEqual(looks, [self.facts.look(p) for p in paths])
        self.assertIs(looks[1], GONE)
        self.assertEqual(looks[2][1], os.lstat(os.path.join(self.dir, "dangling")).st_ino)
        self.assertEqual(looks[4][1], os.stat(os.path.join(self.dir, "f")).st_ino)
        self.assertEqual(FileFacts.entries(paths, looks, 5.0),
                         [FileFacts.entry(p, seen, 5.0) for p, seen in zip(paths, looks, strict=True)])

    def test_looking_at_many_files_of_a_directory_gone_finds_each_gone(self):
        self.write("f", b"12345")
        aside = self.dir + ".aside"
        os.rename(self.dir, aside)
        try:
            self.assertEqual(self.facts.look_all([b"f", b"g"]), [GONE, GONE])
        finally:
            os.rename(aside, self.dir)

    def test_without_extra_fields_an_event_says_nothing_of_its_file(self):
        facts = FileFacts(section(self.dir))
        self.write("f", b"x")
        self.assertIsNone(facts.facts(b"f", facts.look(b"f")))

    def test_a_name_that_is_not_utf8_is_looked_at_by_its_bytes(self):
        name = b"caf\xe9.csv"
        self.write(os.fsdecode(name), b"x")
        self.assertEqual(self.facts.look(name)[2], 1)


class EventFieldsTests(unittest.TestCase):
    def test_a_json_event_gets_its_fields_after_the_four(self):
        encode = EventEncoder("/srv/in", ("id", "size", "mtime")).encode
        event = json.loads(encode("a.csv", CREATED, 1.5, ("abc", 12, 1700000000.5)))
        self.assertEqual(list(event), ["directory", "filename", "event", "event_timestamp", "id", "size", "mtime"])
        self.assertEqual((event["id"], event["size"], event["mtime"]), ("abc", 12, 1700000000.5))
        gone = json.loads(encode("b.csv", EXISTS, 1.5, ("def", None, None)))
        self.assertEqual((gone["size"], gone["mtime"]), (None, None))

    def test_only_the_fields_asked_for(self):
        encode = EventEncoder("/srv/in", ("size",)).encode
        self.assertEqual(list(json.loads(encode("a", CREATED, 1.0, ("x", 3, 2.0)))),
                         ["directory", "filename", "event", "event_timestamp", "size"])

    def test_without_fields_the_event_keeps_its_four_keys(self):
        encode = EventEncoder("/srv/in").encode
        self.assertEqual(list(json.loads(encode("a", CREATED, 1.0, ("x", 3, 2.0)))),
                         ["directory", "filename", "event", "event_timestamp"])

    def test_a_stream_entry_gets_them_as_fields(self):
        encode = StreamQueue().encoder("/srv/in", ("id", "size", "mtime"))
        item = encode("a", CREATED, 1.0, ("abc", 12, 2.5))
        self.assertEqual(item[4:], (b"id", b"abc", b"size", b"12", b"mtime", b"2.5"))
        self.assertEqual(encode("a", CREATED, 1.0, ("abc", None, None))[4:],
                         (b"id", b"abc", b"size", b"", b"mtime", b""))


class ConfigurationTests(unittest.TestCase):
    def test_the_record_is_named_after_the_queue_unless_given(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(section(d).record_key, "q:announced")
            self.assertEqual(section(d, "announced = seen\n").record_key, "seen")
            self.assertIsNone(section(d, once=False).record_key)

    def test_bad_values_are_one_line_errors_naming_key_and_section(self):
        with tempfile.TemporaryDirectory() as d:
            for extra, words in (("reannounce_after = -1\n", "reannounce_after"),
                                 ("reannounce_after = soon\n", "reannounce_after"),
                                 ("extra_fields = id;colour\n", "extra_fields: 'colour'")):
                with self.assertRaises(config.ConfigError) as info:
                    section(d, extra)
                self.assertIn(f"[s] {words}", str(info.exception))
                self.assertNotIn("\n", str(info.exception))

    def test_two_sections_may_not_share_a_record_nor_use_a_queue_as_one(self):
        with tempfile.TemporaryDirectory() as d:
            base = ("[common]\nredis_server = 127.0.0.1\nredis_port = 6399\n"
                    f"[a:common]\nactive = true\ndirectory = {d}\nqueue = q\nannounce_once = true\n")
            with self.assertRaisesRegex(config.ConfigError, r"\[a\] and \[b\] both record .* in q:announced"):
                config.parse(base + f"[b:common]\nactive = true\ndirectory = {d}/x\nqueue = q\n"
                             "announce_once = true\n", "c.ini")
            with self.assertRaisesRegex(config.ConfigError, r"\[a\] announced: r is a queue"):
                config.parse(base + f"announced = r\n[b:common]\nactive = true\ndirectory = {d}/x\n"
                             "queue = r\n", "c.ini")


class IdentifiedEventsTests(unittest.TestCase):
    """
    What a section with C{announce_once} hands the writer for a read: no
    server (the writer is not started, so it holds what it is given).
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        from dirobserver.announce.announcer import Announcer
        from dirobserver.redis.writer import RedisWriter

        self.dir = tempfile.mkdtemp()
        self.addCleanup(lambda: [os.unlink(os.path.join(self.dir, n)) for n in os.listdir(self.dir)]
                        and os.rmdir(self.dir))
        text = ("[common]\nredis_server = 127.0.0.1\nredis_port = 6399\n"
                f"[s:common]\nactive = true\ndirectory = {self.dir}\nqueue = q\nannounce_once = true\n"
                "only = .*\\.csv$\n")
        parsed = config.parse(text, os.path.join(self.dir, "c.ini"))
        self.writer = RedisWriter(parsed.redis, 1000, reactor)  # type: ignore[arg-type]
        self.announcer = Announcer(parsed.sections[0], self.writer, None)  # type: ignore[arg-type]

    def test_each_accepted_file_gets_its_event_and_record_entry_in_order(self):
        for name in ("a.csv", "b.txt", "c.csv"):
            open(os.path.join(self.dir, name), "w").close()
        batch = [(b"a.csv", 0x100), (b"b.txt", 0x100), (b"gone.csv", 0x100), (b"d.csv", 0x100 | 0x40000000),
                 (b"c.csv", 0x100)]
        self.announcer.created_events(batch, 7.25)
        q = self.announcer.queue
        self.assertEqual([json.loads(p)["filename"] for p in q.pending], ["a.csv", "gone.csv", "c.csv"])
        a, c = (os.stat(os.path.join(self.dir, n)) for n in ("a.csv", "c.csv"))
        expected = [(b"a.csv", record_value(a.st_dev, a.st_ino, 7.25)), (b"gone.csv", b"0:0:7.25"),
                    (b"c.csv", record_value(c.st_dev, c.st_ino, 7.25))]
        self.assertEqual(q.pending_entries, expected)
        self.assertEqual([self.writer.records.value("q:announced", f) for f, _ in expected],
                         [v for _, v in expected])

    def test_settled_files_are_pushed_by_kind_each_in_order(self):
        for name in ("a.csv", "b.csv", "c.csv"):
            open(os.path.join(self.dir, name), "w").close()
        self.announcer.announce([("a.csv", CREATED), ("b.csv", EXISTS), ("c.csv", CREATED)], 3.0)
        q = self.announcer.queue
        events = [(e["filename"], e["event"]) for e in map(json.loads, q.pending)]
        self.assertEqual(events, [("a.csv", CREATED), ("c.csv", CREATED), ("b.csv", EXISTS)])
        self.assertEqual([f for f, _ in q.pending_entries], [b"a.csv", b"c.csv", b"b.csv"])
