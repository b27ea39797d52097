"""
Prometheus metrics, read from the observer's own counters on each scrape.

The writer, the monitors and the core service keep plain numbers as they
work (see L{dirobserver.util.stats}); nothing on their paths calls
C{prometheus_client}.  L{ObserverCollector.collect} reads those numbers when
someone scrapes C{/metrics} and turns them into metric families.  It runs in
the reactor thread (L{dirobserver.ops.http} renders synchronously), so it reads
them without locks.

The collector lives in a private C{CollectorRegistry} (L{registry}): the
global one would also export this process's Python and GC metrics under
names we do not document, and would keep our collector alive across tests.

Labels are section names and event kinds only, never paths: a path is
unbounded and may hold bytes that are not UTF-8.

What the C{core} object must provide::

    core.monitors                  objects with .section.name, .state
                                   ("watched" or "missing"), .listings,
                                   .tree.counts() (sub-directories by state),
                                   .once (None, or .skipped and .pruned:
                                   announce_once)
    core.writer.delivered_by       {(section, event): acknowledged events}
    core.writer.held()             events held in memory, not yet acknowledged
    core.writer.redis_up()         whether the connection is usable
    core.writer.reconnects         reconnections since start
    core.writer.replica_waits_short  rounds whose WAIT ended with fewer
                                   replicas than redis_wait_replicas
    core.writer.dropped            events dropped at the held bound (a listing
                                   announces them later)
    core.writer.delivery_seconds   stats.Histogram
    core.overflows                 kernel queue overflows (inotify and fanotify)
    core.watcher                   the inotify source (None until started), with
                                   .backlog() (bytes read, not handed over)
    core.fanotify.source           the fanotify source (None: no section uses it),
                                   with .events, .overflows, .watch_count(),
                                   .cached_directories(), .backlog()
    core.listing_seconds           stats.Histogram
    core.watchdog_resets           inactivity watchdog resets
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from dirobserver import __version__
from dirobserver.util.stats import Histogram

#: The states a monitored directory can be in; each is always exported.
DIRECTORY_STATES = ("watched", "missing")
#: How the sub-directories of recursive sections are watched (see
#: L{dirobserver.sources.tree.DirectoryTree.counts}); each is always exported.
SUBDIRECTORY_STATES = ("watched", "polled", "past_watch_limit")


def version() -> str:
    """dirobserver's version (C{dirobserver.__version__}, known installed or not)."""
    return __version__


def histogram_family(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    """
    A L{Histogram} as a Prometheus histogram: cumulative buckets ending with
    C{+Inf} (which equals the count), and the sum.
    """
    family = HistogramMetricFamily(name, documentation)
    buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
    family.add_metric([], buckets, sum_value=histogram.total)
    return family


class ObserverCollector:
    """
    A C{prometheus_client} collector reading the counters of C{core}.

    @ivar core: the object described in the module docstring.
    """

    def __init__(self, core: Any, build_version: str | None = None) -> None:
        self.core = core
        self._version = version() if build_version is None else build_version

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family, read from C{core} now."""
        core = self.core
        writer = core.writer

        events = CounterMetricFamily(
            "dirobserver_events_total",
            "Events acknowledged by Redis, by section and event kind (created, exists).",
            labels=["section", "event"],
        )
        for (section, event), count in sorted(writer.delivered_by.items()):
            events.add_metric([section, event], count)
        yield events

        yield GaugeMetricFamily(
            "dirobserver_held_events", "Events held in memory, not yet acknowledged by Redis.", value=writer.held()
        )
        yield GaugeMetricFamily(
            "dirobserver_redis_up", "1 when the Redis connection is usable, else 0.",
            value=1 if writer.redis_up() else 0,
        )
        yield CounterMetricFamily(
            "dirobserver_redis_reconnects_total", "Reconnections to Redis since start.", value=writer.reconnects
        )
        yield CounterMetricFamily(
            "dirobserver_redis_replica_waits_short_total",
            "Rounds whose WAIT ended with fewer replicas than redis_wait_replicas (0 when it is 0).",
            value=writer.replica_waits_short,
        )
        yield CounterMetricFamily(
            "dirobserver_overflows_total",
            "Kernel event queue overflows, inotify or fanotify (each followed by a listing).",
            value=core.overflows,
        )
        yield GaugeMetricFamily(
            "dirobserver_backlog_bytes",
            "Bytes of kernel events read and not handed over yet (inotify and fanotify): a burst being caught up.",
            value=sum(source.backlog() for source in (core.watcher, core.fanotify.source) if source is not None),
        )
        yield from fanotify_families(core.fanotify.source)

        directories = GaugeMetricFamily(
            "dirobserver_directories", "Monitored directories by state.", labels=["state"]
        )
        by_state = dict.fromkeys(DIRECTORY_STATES, 0)
        listings = CounterMetricFamily(
            "dirobserver_listings_total", "Directory listings done, by section.", labels=["section"]
        )
        skipped = CounterMetricFamily(
            "dirobserver_listing_skipped_total",
            "Files listings found and did not announce, announced already (announce_once), by section.",
            labels=["section"],
        )
        pruned = CounterMetricFamily(
            "dirobserver_record_pruned_total",
            "Fields removed from the record of what was announced, their files gone (announce_once), "
            "by section.",
            labels=["section"],
        )
        subdirectories = dict.fromkeys(SUBDIRECTORY_STATES, 0)
        for monitor in core.monitors:
            by_state[monitor.state] = by_state.get(monitor.state, 0) + 1
            listings.add_metric([monitor.section.name], monitor.listings)
            once = monitor.once
            if once is not None:
                skipped.add_metric([monitor.section.name], once.skipped)
                pruned.add_metric([monitor.section.name], once.pruned)
            if monitor.tree is not None:
                for state, count in monitor.tree.counts().items():
                    subdirectories[state] += count
        for state, count in by_state.items():
            directories.add_metric([state], count)
        yield directories
        yield listings
        yield skipped
        yield pruned
        tree = GaugeMetricFamily(
            "dirobserver_subdirectories",
            "Sub-directories of recursive sections, by how they are watched.", labels=["state"],
        )
        for state, count in subdirectories.items():
            tree.add_metric([state], count)
        yield tree

        yield histogram_family(
            "dirobserver_listing_seconds", "Duration of one directory listing.", core.listing_seconds
        )
        yield histogram_family(
            "dirobserver_delivery_seconds", "Time from seeing a file to Redis's acknowledgement of its event.",
            writer.delivery_seconds,
        )
        yield CounterMetricFamily(
            "dirobserver_dropped_to_listing_total",
            "Events dropped at max_held_events while Redis was unreachable; a listing announces the files later.",
            value=writer.dropped,
        )
        yield CounterMetricFamily(
            "dirobserver_watchdog_resets_total", "Inactivity watchdog resets of a directory's watch.",
            value=core.watchdog_resets,
        )
        build = GaugeMetricFamily("dirobserver_build_info", "Always 1; the version is the label.", labels=["version"])
        build.add_metric([self._version], 1)
        yield build


def fanotify_families(source: Any) -> Iterator[Metric]:
    """The fanotify group's counters (zero when no section uses it, so the names are always there)."""
    yield CounterMetricFamily(
        "dirobserver_fanotify_events_total", "Events read from the fanotify group (every marked filesystem's).",
        value=source.events if source is not None else 0,
    )
    yield CounterMetricFamily(
        "dirobserver_fanotify_overflows_total", "fanotify event queue overflows (each followed by a listing).",
        value=source.overflows if source is not None else 0,
    )
    yield GaugeMetricFamily(
        "dirobserver_fanotify_directories", "Directories the fanotify group delivers events of (no kernel watch each).",
        value=source.watch_count() if source is not None else 0,
    )
    yield GaugeMetricFamily(
        "dirobserver_fanotify_cached_directories",
        "Directories whose path the lazy trees remember, by the handle their events carry (bounded).",
        value=source.cached_directories() if source is not None else 0,
    )


def registry(core: Any) -> CollectorRegistry:
    """A private registry holding only an L{ObserverCollector} for C{core}."""
    # auto_describe=False: registering must not call collect() (core may not
    # be started yet).
    result = CollectorRegistry(auto_describe=False)
    result.register(ObserverCollector(core))
    return result
