"""
What the listings of one section work with (L{ListingContext}), given whole
by its monitor to the listing (L{dirobserver.announce.listing}) and to its
announcing half (L{dirobserver.announce.listing_announce}).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import task
from twisted.internet.interfaces import IReactorTime

from dirobserver.announce.announcer import Announcer
from dirobserver.announce.listing_line import ListingLine
from dirobserver.config.settings import SectionSettings
from dirobserver.redis.writer import RedisWriter
from dirobserver.util.stats import Histogram


@dataclass(frozen=True)
class ListingContext:
    """
    What the listings of one section work with, given whole by its monitor.

    @ivar section: the section's settings.
    @ivar writer: where the C{"exists"} events go, and whose queue's length
        C{poll_queue_limit} is checked against.
    @ivar announcer: the section's (its queue, how a name becomes what
        the queue holds, and the files' facts when its events identify
        them).
    @ivar source: what the writer asks to list again when it could not
        hold this section's events (the section's monitor).
    @ivar cooperator: runs the scans and the announcing (the service's own).
    @ivar turns: shared by all sections: a few listings at a time, while
        Redis takes commands.
    @ivar durations: where each listing's duration is counted.
    @ivar watched: which watch covers the directory now (None: none).  A
        listing of a directory that is not watched announces nothing, and
        one whose watch ended or changed while it ran stops: the files it
        would leave in the table would have no events to follow them (the
        soak found a listing of a directory deleted and recreated, run
        before the new watch, that announced files still being written).
        The new watch lists the directory itself.
    @ivar clock: stamps the C{"exists"} events, and times the later looks.
    """

    section: SectionSettings
    writer: RedisWriter
    announcer: Announcer
    source: Any
    cooperator: task.Cooperator
    turns: ListingLine
    durations: Histogram
    watched: Callable[[], int | None]
    clock: IReactorTime
