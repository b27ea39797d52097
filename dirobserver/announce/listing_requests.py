"""
The listings asked of a section while one of its listings waits for its
turn or runs, and the one listing that covers them.

A listing is C{(resume, since)}: a full one C{(False, None)}; a resumed one
C{(True, None)}, after the last file announced by a listing that
C{poll_queue_limit} cut short; or a look at the files modified since a time
C{(False, since)}, the later look at files that were too young (see
L{dirobserver.announce.listing.SectionListings.relist}).  A request made
during a listing is remembered, never lost, and served by one more listing
when the current one ends: several sections' worth of overflows and
catch-ups cost one listing each, not one per request.
"""

from __future__ import annotations

#: One listing: C{(resume, since)} (see the module docstring).
Listing = tuple[bool, float | None]

FULL: Listing = (False, None)


def covering(a: Listing, b: Listing) -> Listing:
    """
    One listing covering listings C{a} and C{b}, each C{(resume, since)}: a
    full one (C{(False, None)}) covers every listing; a resumed one covers
    the files modified since any time; of two looks at recent files, the
    earlier C{since} covers both.
    """
    (a_resume, a_since), (b_resume, b_since) = a, b
    if (not a_resume and a_since is None) or (not b_resume and b_since is None):
        return FULL
    if a_resume or b_resume:
        return True, None
    return False, min(a_since, b_since)  # type: ignore[type-var]


class ListingRequests:
    """
    The listings asked while one waits or runs: true while any was asked.
    """

    __slots__ = ("_asked", "_full", "_resume", "_since")

    def __init__(self) -> None:
        self._asked = False
        self._full = False
        self._resume = False
        self._since: float | None = None

    def __bool__(self) -> bool:
        return self._asked

    def ask(self, resume: bool, since: float | None) -> None:
        """
        Remember a listing asked.  What is asked adds up to a full listing
        if any request was full, else a resumed one if any was, else one of
        the files modified since the earliest C{since}.
        """
        self._asked = True
        if since is not None:
            self._since = since if self._since is None else min(since, self._since)
        elif resume:
            self._resume = True
        else:
            self._full = True

    def take(self) -> Listing:
        """One listing covering what was asked, which is then forgotten."""
        asked = (self._resume and not self._full,
                 None if self._full or self._resume else self._since)
        self._asked = self._full = self._resume = False
        self._since = None
        return asked
