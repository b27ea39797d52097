"""
The worker's C{/metrics}, C{/livez} and C{/readyz}, served by the observer's
L{dirobserver.ops.http.MetricsService}.

As for the observer (L{dirobserver.ops.metrics}), the worker keeps plain
counters as it works and L{WorkerCollector} reads them on each scrape.
Labels are the section only, never paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

from dirobserver.ops.metrics import histogram_family


class WorkerProbe:
    """What the HTTP pages ask of a daemon, for the worker (and its metrics)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerCollector(worker))

    def alive(self) -> bool:
        """The event loop answers (this runs in it)."""
        return True

    def ready_problem(self) -> str | None:
        """None once registered with Redis and the connection is up; else why not."""
        problem = self.worker.main.connection.problem
        if problem is not None:
            return str(problem)
        return None if self.worker.ready else "not registered with Redis yet"

    def problems(self) -> list[str]:
        """Everything that is not well, one line each (the bodies of /livez and /readyz)."""
        problem = self.ready_problem()
        return [] if problem is None else [problem]


class WorkerCollector:
    """Reads the counters of a L{dirobserver.worker.service.WorkerService} (its L{dirobserver.worker.job.Outcomes})."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        w = self.worker
        o = w.outcomes
        section = w.config.section
        files = CounterMetricFamily(
            "dirobserver_worker_files_total",
            "Files handled, by section and outcome (succeeded, failed, skipped: gone or "
            "claimed by another worker; recovered: a dead worker's claim run again).",
            labels=["section", "outcome"])
        for outcome in ("succeeded", "failed", "skipped", "recovered", "given_back"):
            files.add_metric([section, outcome], getattr(o, outcome))
        yield files
        yield CounterMetricFamily("dirobserver_worker_timeouts_total",
                                  "Commands killed at --timeout.", value=o.timed_out)
        yield CounterMetricFamily("dirobserver_worker_bad_events_total",
                                  "Events that named no usable file (dropped with a log line).",
                                  value=o.bad)
        yield GaugeMetricFamily("dirobserver_worker_running", "Commands running now.",
                                value=w.file_jobs.commands_running)
        yield GaugeMetricFamily("dirobserver_worker_redis_up",
                                "1 when the Redis connection is usable, else 0.",
                                value=1 if w.main.proto is not None else 0)
        yield histogram_family("dirobserver_worker_command_seconds", "Duration of one command.",
                               o.durations)
