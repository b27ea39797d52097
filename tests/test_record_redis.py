"""
The record of what was announced against a real valkey-server: written in
the events' transaction, refused without holding events back, and read by
the listings of announce_once (what they skip, what they prune).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from dirobserver.announce.announcer import Announcer
from dirobserver.announce.once import ListedOnce
from dirobserver.config import settings as config
from dirobserver.redis.record import parse_value, record_value
from dirobserver.redis.writer import RedisWriter
from tests.kit import RedisServer
from tests.kit.log_capture import LogCapture
from tests.kit.waiting import wait_for

#: Every test here starts a server (see `make unit`).
pytestmark = pytest.mark.process


class RecordTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.client = self.server.client()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.log = LogCapture(self)

    def section(self, extra: str = "") -> config.SectionSettings:
        text = (f"[common]\nredis_server = 127.0.0.1\nredis_port = {self.server.port}\ntimeout = 2\n"
                f"[s:common]\nactive = true\ndirectory = {self.dir}\nqueue = q\nannounce_once = true\n"
                + extra)
        parsed = config.parse(text, os.path.join(self.dir, "c.ini"))
        self.redis_settings = parsed.redis
        return parsed.sections[0]

    def start(self, extra: str = "") -> tuple[RedisWriter, Announcer]:
        section = self.section(extra)
        writer = RedisWriter(self.redis_settings, 100_000, reactor)
        writer.startService()
        self.addCleanup(writer.stopService)
        announcer = Announcer(section, writer, None)  # type: ignore[arg-type]
        return writer, announcer

    def touch(self, name: str) -> None:
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(name)

    @staticmethod
    def wait_for(predicate) -> defer.Deferred:
        return wait_for(predicate, timeout=10.0)

    def queued(self) -> list[dict]:
        return [json.loads(e) for e in reversed(self.client.lrange("q", 0, -1))]

    @defer.inlineCallbacks
    def test_an_event_and_its_record_are_written_together(self):
        writer, announcer = self.start()
        yield writer.when_connected()
        self.touch("a")
        announcer.created_events([(b"a", 0x100)], 100.0)
        self.assertTrue(writer.records.holds("q:announced", b"a"))  # held: counts as announced
        self.assertTrue((yield self.wait_for(lambda: writer.held() == 0)))
        st = os.stat(os.path.join(self.dir, "a"))
        self.assertEqual(self.client.hget("q:announced", "a"), record_value(st.st_dev, st.st_ino, 100.0))
        self.assertEqual([e["filename"] for e in self.queued()], ["a"])
        self.assertEqual(writer.records.count(), 0)  # acknowledged: no longer held

    @defer.inlineCallbacks
    def test_a_record_of_the_wrong_type_is_said_once_and_holds_no_event_back(self):
        self.client.set("q:announced", "not a hash")
        writer, announcer = self.start()
        yield writer.when_connected()
        for i in range(5):
            self.touch(f"f{i}")
            announcer.created_events([(f"f{i}".encode(), 0x100)], 100.0 + i)
            self.assertTrue((yield self.wait_for(lambda i=i: self.client.llen("q") == i + 1)))
        warnings = [line for line in self.log.lines("warn") if "refused the record q:announced" in line]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("WRONGTYPE", warnings[0])
        self.client.delete("q:announced")
        self.touch("after")
        announcer.created_events([(b"after", 0x100)], 200.0)
        self.assertTrue((yield self.wait_for(lambda: self.client.hexists("q:announced", "after"))))
        self.assertTrue(any("takes the record q:announced again" in line for line in self.log.lines("info")))

    @defer.inlineCallbacks
    def test_a_record_written_while_the_push_was_refused_is_taken_back(self):
        self.client.set("q", "not a list")
        writer, announcer = self.start()
        yield writer.when_connected()
        self.touch("a")
        announcer.created_events([(b"a", 0x100)], 100.0)
        self.assertTrue((yield self.wait_for(
            lambda: any("refused events for queue q" in line for line in self.log.lines("warn")))))
        # The transaction wrote the record, then the rounds took it back.
        self.assertTrue((yield self.wait_for(lambda: self.client.hlen("q:announced") == 0)))
        self.assertEqual(self.client.info("commandstats")["cmdstat_hdel"]["calls"], 1)
        self.client.delete("q")
        self.assertTrue((yield self.wait_for(lambda: self.client.hexists("q:announced", "a"))))
        self.assertEqual([e["filename"] for e in self.queued()], ["a"])

    def run_listing(self, once: ListedOnce, names: list[bytes], now: float) -> defer.Deferred:
        return task.cooperate(once.announce(iter(names), now, lambda: False)).whenDone()

    @defer.inlineCallbacks
    def test_a_listing_announces_only_what_was_never_announced(self):
        writer, announcer = self.start("extra_fields = id\n")
        yield writer.when_connected()
        for name in ("old", "replaced", "new"):
            self.touch(name)
        old = os.stat(os.path.join(self.dir, "old"))
        self.client.hset("q:announced", "old", record_value(old.st_dev, old.st_ino, 10.0))
        self.client.hset("q:announced", "replaced", record_value(old.st_dev, 1, 10.0))  # another inode
        self.touch("held")
        announcer.created_events([(b"held", 0x100)], 11.0)  # sent, perhaps not acknowledged yet
        once = ListedOnce(announcer, writer, 0, self.dir)
        yield self.run_listing(once, [b"old", b"replaced", b"new", b"held", b"vanished"], 20.0)
        self.assertTrue((yield self.wait_for(lambda: writer.held() == 0)))
        listed = [e["filename"] for e in self.queued() if e["event"] == "exists"]
        self.assertEqual(listed, ["replaced", "new"])
        self.assertEqual(once.skipped, 2)  # old and held; vanished is gone, not skipped
        self.assertEqual(parse_value(self.client.hget("q:announced", "replaced"))[2], 20.0)

    @defer.inlineCallbacks
    def test_reannounce_after_announces_again_with_the_same_id(self):
        writer, announcer = self.start("reannounce_after = 60\nextra_fields = id\n")
        yield writer.when_connected()
        self.touch("f")
        once = ListedOnce(announcer, writer, 60, self.dir)
        yield self.run_listing(once, [b"f"], 1000.0)
        yield self.run_listing(once, [b"f"], 1030.0)  # recent: skipped
        yield self.run_listing(once, [b"f"], 1061.0)  # older than 60 s: again
        self.assertTrue((yield self.wait_for(lambda: writer.held() == 0)))
        events = self.queued()
        self.assertEqual([e["event_timestamp"] for e in events], [1000.0, 1061.0])
        self.assertEqual(events[0]["id"], events[1]["id"])
        self.assertEqual(once.skipped, 1)

    @defer.inlineCallbacks
    def test_the_prune_removes_the_records_of_files_gone_only(self):
        writer, announcer = self.start()
        yield writer.when_connected()
        self.touch("present")
        for i in range(2500):  # more than one HSCAN step
            self.client.hset("q:announced", f"gone{i}", b"1:1:1.0")
        self.client.hset("q:announced", "present", b"1:1:1.0")
        self.client.hset("q:announced", "pending", b"1:1:1.0")
        writer.records.hold("q:announced", [(b"pending", b"1:2:2.0")])  # an event of it is held
        once = ListedOnce(announcer, writer, 0, self.dir)
        yield task.cooperate(once.prune(lambda: False)).whenDone()
        self.assertEqual(sorted(self.client.hkeys("q:announced")), [b"pending", b"present"])
        self.assertEqual(once.pruned, 2500)

    @defer.inlineCallbacks
    def test_a_directory_renamed_away_for_a_moment_keeps_its_record(self):
        """
        A prune while the directory is renamed away (an operator moving it
        aside and back) removes nothing: its files are not gone, and the
        soak saw a record of 2,000 files present emptied, then all of them
        announced again.  Back in place, only what is really gone goes.
        """
        writer, announcer = self.start()
        yield writer.when_connected()
        for i in range(1500):  # more than one HSCAN step
            self.touch(f"f{i}")
            self.client.hset("q:announced", f"f{i}", b"1:1:1.0")
        self.client.hset("q:announced", "gone", b"1:1:1.0")
        once = ListedOnce(announcer, writer, 0, self.dir)
        aside = self.dir + ".aside"
        os.rename(self.dir, aside)
        try:
            yield task.cooperate(once.prune(lambda: False)).whenDone()
        finally:
            os.rename(aside, self.dir)
        self.assertEqual((once.pruned, self.client.hlen("q:announced")), (0, 1501))
        yield task.cooperate(once.prune(lambda: False)).whenDone()
        self.assertEqual((once.pruned, self.client.hlen("q:announced")), (1, 1500))
