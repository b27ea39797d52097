"""
The one rule for a file that may still be written: it is settled once
quiet (unmodified) for C{settle} seconds.

Three mechanisms wait by this rule, each with what it can know of a file:

 - the settle table (L{dirobserver.announce.settle}) hears a file's events,
   and times its wait from the last of them;
 - the poller (L{dirobserver.sources.polling}) sees a file change only from
   one scan to the next, and times its wait from the scan that saw the
   last change (on its own clock: a network filesystem's need not agree);
 - a listing (L{dirobserver.announce.listing}) reads modification times,
   and splits the files it found, sorted by that time, at L{quiet_since}.

They stay three because what they know differs (events, scans, a listing's
modification times), and so does when they act (a timer per bucket of
files, the next scan, a later listing).  What "quiet for C{settle}" means is
here only.
"""

from __future__ import annotations


def quiet_at(changed: float, settle: float) -> float:
    """When a file last changed at C{changed} has been quiet for C{settle} seconds."""
    return changed + settle


def quiet_since(now: float, settle: float) -> float:
    """
    The latest last change of a file quiet for C{settle} seconds at
    C{now}: a file changed then or before is settled.
    """
    return now - settle


def is_quiet(changed: float, settle: float, now: float) -> bool:
    """Whether a file last changed at C{changed} has been quiet for C{settle} seconds at C{now}."""
    return now - changed >= settle
