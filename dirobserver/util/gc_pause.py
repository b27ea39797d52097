"""
Python's cyclic garbage collector around the building of many sections.

Starting on 10,000 sections makes about half a million long-lived objects:
the parsed configuration, then a monitor per section with its listings,
table and tree, then the watches.  While they are made, the collector runs
a full pass each time the heap has grown by a quarter; measured in-process,
that was 0.85 s of a 2.3-second start.  Afterwards every full pass (0.16 s
over that heap, a pause of the reactor) walks them again, though they live
as long as the daemon.

L{bulk} turns the collector off while such a batch is built, then makes one
full pass (the standard library's configparser leaves a cycle per section:
it is freed there) and freezes what survives (C{gc.freeze}): later passes
skip it.  What an earlier batch froze is unfrozen first, so the sections a
reload replaces are freed by the reload's pass, not kept for good.

A configuration of a few sections makes few objects, and a full pass per
batch would cost more than it saves: below L{BULK} sections nothing changes,
unless something is frozen (a reload from 10,000 sections to 10 must free
the 9,990).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: From this many sections on, a batch is built with the collector off.
BULK = 500


@contextlib.contextmanager
def bulk(sections: int) -> Iterator[None]:
    """Build what is made in the block for C{sections} sections (see the module docstring)."""
    if (sections < BULK and not gc.get_freeze_count()) or not gc.isenabled():
        # Few objects and nothing frozen to free; or within another batch,
        # which ends with the pass.
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        gc.enable()
