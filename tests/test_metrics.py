"""
L{dirobserver.ops.metrics}: the collector reads the core's counters on each
scrape; scraped here over real HTTP (L{dirobserver.ops.http}'s site on a real
loopback port) and parsed with prometheus_client's own parser.
"""

from __future__ import annotations

from importlib import metadata

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.trial import unittest

import dirobserver
from dirobserver.ops import metrics
from dirobserver.ops.http import MetricsService
from tests.kit.ops_stand_ins import Core, FanotifySource, InotifySource, Monitor, Once, Section, Tree, get


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def busy_core() -> Core:
    core = Core(monitors=[
        Monitor(Section("stage1"), "watched", listings=3, tree=Tree(watched=40, past_watch_limit=2)),
        Monitor(Section("stage2"), "missing", listings=1, tree=Tree(polled=5)),
        Monitor(Section("stage3"), "watched", listings=0, once=Once(skipped=12, pruned=3)),
    ])
    core.writer.delivered_by = {("stage1", "created"): 41, ("stage1", "exists"): 7, ("stage2", "created"): 2}
    core.writer.held_events = 5
    core.writer.up = False
    core.writer.reconnects = 4
    core.writer.replica_waits_short = 9
    core.writer.dropped = 11
    core.overflows = 2
    core.watchdog_resets = 6
    core.fanotify.source = FanotifySource(events=900, overflows=1, directories=41, cached=77, held=4096)
    core.watcher = InotifySource(held=65536)
    for value in (0.0002, 0.0002, 0.003, 12.0, 400.0):
        core.writer.delivery_seconds.observe(value)
    core.listing_seconds.observe(0.02, weight=3)
    core.listing_seconds.observe(7.5)
    return core


class CollectorTests(unittest.TestCase):
    def setUp(self) -> None:
        self.core = busy_core()
        self.service = MetricsService("tcp:0:interface=127.0.0.1", self.core, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    @defer.inlineCallbacks
    def scrape(self):
        port = self.service.port.getHost().port
        code, headers, body = yield get(f"http://127.0.0.1:{port}/metrics")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        return body.decode()

    @defer.inlineCallbacks
    def test_values_from_the_core(self):
        text = yield self.scrape()
        got = samples(text)
        expected = {
            ("dirobserver_events_total", (("event", "created"), ("section", "stage1"))): 41,
            ("dirobserver_events_total", (("event", "exists"), ("section", "stage1"))): 7,
            ("dirobserver_events_total", (("event", "created"), ("section", "stage2"))): 2,
            ("dirobserver_held_events", ()): 5,
            ("dirobserver_redis_up", ()): 0,
            ("dirobserver_redis_reconnects_total", ()): 4,
            ("dirobserver_redis_replica_waits_short_total", ()): 9,
            ("dirobserver_overflows_total", ()): 2,
            ("dirobserver_directories", (("state", "watched"),)): 2,
            ("dirobserver_directories", (("state", "missing"),)): 1,
            ("dirobserver_listings_total", (("section", "stage1"),)): 3,
            ("dirobserver_listings_total", (("section", "stage2"),)): 1,
            ("dirobserver_listings_total", (("section", "stage3"),)): 0,
            ("dirobserver_listing_skipped_total", (("section", "stage3"),)): 12,
            ("dirobserver_record_pruned_total", (("section", "stage3"),)): 3,
            ("dirobserver_subdirectories", (("state", "watched"),)): 40,
            ("dirobserver_subdirectories", (("state", "polled"),)): 5,
            ("dirobserver_subdirectories", (("state", "past_watch_limit"),)): 2,
            ("dirobserver_dropped_to_listing_total", ()): 11,
            ("dirobserver_watchdog_resets_total", ()): 6,
            ("dirobserver_backlog_bytes", ()): 65536 + 4096,
            ("dirobserver_fanotify_events_total", ()): 900,
            ("dirobserver_fanotify_overflows_total", ()): 1,
            ("dirobserver_fanotify_directories", ()): 41,
            ("dirobserver_fanotify_cached_directories", ()): 77,
            ("dirobserver_build_info", (("version", metadata.version("dirobserver")),)): 1,
        }
        for key, value in expected.items():
            self.assertEqual(got.get(key), value, key)
        self.assertEqual(types(text), {
            "dirobserver_events": "counter",
            "dirobserver_held_events": "gauge",
            "dirobserver_redis_up": "gauge",
            "dirobserver_redis_reconnects": "counter",
            "dirobserver_redis_replica_waits_short": "counter",
            "dirobserver_overflows": "counter",
            "dirobserver_directories": "gauge",
            "dirobserver_listings": "counter",
            "dirobserver_listing_skipped": "counter",
            "dirobserver_record_pruned": "counter",
            "dirobserver_subdirectories": "gauge",
            "dirobserver_listing_seconds": "histogram",
            "dirobserver_delivery_seconds": "histogram",
            "dirobserver_dropped_to_listing": "counter",
            "dirobserver_watchdog_resets": "counter",
            "dirobserver_backlog_bytes": "gauge",
            "dirobserver_fanotify_events": "counter",
            "dirobserver_fanotify_overflows": "counter",
            "dirobserver_fanotify_directories": "gauge",
            "dirobserver_fanotify_cached_directories": "gauge",
            "dirobserver_build_info": "gauge",
        })
        # Labels are section names and kinds, never paths.
        label_names = {name for (_, labels) in got for name, _ in labels}
        self.assertEqual(label_names, {"section", "event", "state", "version", "le"})

    @defer.inlineCallbacks
    def test_histograms_are_cumulative_with_inf_sum_and_count(self):
        got = samples((yield self.scrape()))

        def bucket(name: str, le: str) -> float:
            return got[(f"{name}_bucket", (("le", le),))]

        delivery = "dirobserver_delivery_seconds"
        self.assertEqual(bucket(delivery, "0.0005"), 2)
        self.assertEqual(bucket(delivery, "0.005"), 3)
        self.assertEqual(bucket(delivery, "10.0"), 3)
        self.assertEqual(bucket(delivery, "30.0"), 4)
        self.assertEqual(bucket(delivery, "300.0"), 4)
        self.assertEqual(bucket(delivery, "+Inf"), 5)
        self.assertEqual(got[(f"{delivery}_count", ())], 5)
        self.assertAlmostEqual(got[(f"{delivery}_sum", ())], 0.0002 * 2 + 0.003 + 12 + 400)
        les = [labels[0][1] for (name, labels) in got if name == f"{delivery}_bucket"]
        self.assertEqual(len(les), len(self.core.writer.delivery_seconds.bounds) + 1)

        listing = "dirobserver_listing_seconds"
        self.assertEqual(bucket(listing, "0.01"), 0)
        self.assertEqual(bucket(listing, "0.05"), 3)
        self.assertEqual(bucket(listing, "10.0"), 4)
        self.assertEqual(bucket(listing, "+Inf"), 4)
        self.assertAlmostEqual(got[(f"{listing}_sum", ())], 0.06 + 7.5)

    @defer.inlineCallbacks
    def test_read_on_each_scrape(self):
        first = samples((yield self.scrape()))
        self.core.writer.delivered_by[("stage3", "created")] = 1
        self.core.writer.delivered_by[("stage1", "created")] += 9
        self.core.writer.up = True
        self.core.monitors[1].state = "watched"
        second = samples((yield self.scrape()))
        self.assertNotIn(("dirobserver_events_total", (("event", "created"), ("section", "stage3"))), first)
        self.assertEqual(second[("dirobserver_events_total", (("event", "created"), ("section", "stage3")))], 1)
        self.assertEqual(second[("dirobserver_events_total", (("event", "created"), ("section", "stage1")))], 50)
        self.assertEqual(second[("dirobserver_redis_up", ())], 1)
        self.assertEqual(second[("dirobserver_directories", (("state", "watched"),))], 3)
        self.assertEqual(second[("dirobserver_directories", (("state", "missing"),))], 0)


class RegistryTests(unittest.TestCase):
    def test_empty_core_has_both_directory_states(self):
        from prometheus_client.exposition import generate_latest

        got = samples(generate_latest(metrics.registry(Core())).decode())
        self.assertEqual(got[("dirobserver_directories", (("state", "watched"),))], 0)
        self.assertEqual(got[("dirobserver_directories", (("state", "missing"),))], 0)
        self.assertEqual(got[("dirobserver_subdirectories", (("state", "past_watch_limit"),))], 0)
        self.assertEqual(got[("dirobserver_listing_seconds_count", ())], 0)
        self.assertFalse(any(name == "dirobserver_events_total" for name, _ in got))

    def test_private_registry_only(self):
        registry = metrics.registry(Core())
        self.assertIsNone(REGISTRY.get_sample_value("dirobserver_held_events"))
        self.assertEqual(registry.get_sample_value("dirobserver_held_events"), 0)
        # Nothing else (no process or GC metrics) in ours.
        names = {family.name for family in registry.collect()}
        self.assertTrue(all(name.startswith("dirobserver_") for name in names), names)

    def test_registering_does_not_read_the_core(self):
        class Untouchable:
            def __getattr__(self, name):
                raise AssertionError(f"read {name} at registration")

        metrics.registry(Untouchable())

    def test_version_is_the_packages_own(self):
        """One place: dirobserver.__version__, also what pip installed (setup.py reads it)."""
        self.assertEqual(metrics.version(), dirobserver.__version__)
        self.assertEqual(metadata.version("dirobserver"), dirobserver.__version__)
