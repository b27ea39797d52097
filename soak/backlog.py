"""
A queue longer than its section's C{poll_queue_limit}, as a fault window.

The observer puts a listing off while the section's queue holds
C{poll_queue_limit} events or more (docs/design.md, "Listings and
C{poll_queue_limit}"): the files only a listing can announce (those whose
events were dropped past C{max_held_events}, or were made while the
observer was down) wait until the consumer has caught up.  That is the
observer's documented behaviour, not a miss, so while a consumer is that
far behind no file of its section is due on account of that time.

L{Backlog} samples the queue's length (C{LLEN}, or C{XLEN} for a stream
whose consumer deletes what it acknowledged) at most every L{EVERY}
seconds, and records the span during which it was at or past the limit as
a window of the section (C{queue_backlog}), from the last sample below it
to L{CATCH_UP} seconds after the first sample below it again.
"""

from __future__ import annotations

import time
from typing import Any

from .kinds import STREAM, Section
from .ledger import Ledger

#: Seconds between two samples of a queue's length.
EVERY = 0.5
#: The observer's default C{poll_queue_limit}.
DEFAULT_LIMIT = 10000
#: Seconds the observer may take to notice that a queue has room again: it
#: looks every 5 s at the queues whose listing was put off or cut.
CATCH_UP = 5.0


class Backlog:
    """The backlog windows of one section's queue (see the module docstring)."""

    def __init__(self, section: Section, ledger: Ledger) -> None:
        self.section, self.ledger = section, ledger
        self.limit = int(section.kind.keys.get("poll_queue_limit", DEFAULT_LIMIT))
        self._last = 0.0  # the last sample
        self._since: float | None = None  # the last sample below the limit, while past it
        self.windows = 0

    def sample(self, client: Any) -> None:
        """Look at the queue's length if it is time (a Redis error goes to the caller)."""
        now = time.time()
        if now - self._last < EVERY or not self.limit:
            return
        queue = self.section.queue
        length = client.xlen(queue) if self.section.kind.reader == STREAM else client.llen(queue)
        if length >= self.limit and self._since is None:
            self._since = self._last or now
        elif length < self.limit:
            self.close(now)
        self._last = now

    def close(self, now: float) -> None:
        """The queue is below the limit again (or the run ends): record the window, if any."""
        if self._since is not None:
            self.ledger.window(self._since, now + CATCH_UP, self.section.index, "queue_backlog")
            self.windows += 1
            self._since = None
