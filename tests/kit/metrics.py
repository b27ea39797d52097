"""
The daemon's C{/metrics}, read the way Prometheus reads it: over HTTP, and
parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import urllib.request

#: A sample's key: its name and its labels, sorted (C{("x_total", (("section", "a"),))}).
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def metric_samples(text: str) -> dict[SampleKey, float]:
    """Every sample of an exposition C{text}, by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape_metrics(port: int, timeout: float = 5.0) -> dict[SampleKey, float] | None:
    """The samples of C{http://127.0.0.1:PORT/metrics}; None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    return metric_samples(text)
