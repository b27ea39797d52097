"""
The faults of the I{directory} lane (L{soak.faults}), which hit one
section's directory: deleted and recreated (L{dir_delete}), renamed away
and back (L{dir_rename}), made unreadable (L{dir_unreadable}); in a tree,
a sub-directory deleted (L{subtree_delete}).  Their windows cover that
section.

Each fault takes the L{soak.faults.Soak}, the lane's random generator and
the section it hits, and returns a line of detail.  A deletion or a rename
holds the section's C{ops} lock (no producer's step meanwhile); a deletion
tells the ledger which files went with it (L{soak.ledger.Ledger.swept}).
"""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

from tests.kit import remove_tree

from .kinds import Section

if TYPE_CHECKING:
    from .faults import Soak


def dir_delete(s: Soak, rng: random.Random, section: Section | None) -> str:
    assert section is not None
    with section.ops:
        when = time.time()
        remove_tree(section.directory)
        swept = s.ledger.swept(section.index, when)
        gap = rng.uniform(0.0, 1.5)
        time.sleep(gap)
        section.directory.mkdir()
    return f"deleted with {swept} files, recreated after {gap:.1f} s"


def subtree_delete(s: Soak, rng: random.Random, section: Section | None) -> str:
    """A sub-directory of a tree, with its files, deleted (and not recreated)."""
    assert section is not None
    with section.ops:
        subdirs = sorted(p.name for p in section.directory.iterdir() if p.is_dir() and p.name.startswith("n"))
        if not subdirs:
            return "no sub-directory yet"
        victim = rng.choice(subdirs)
        when = time.time()
        remove_tree(section.directory / victim)
        swept = s.ledger.swept(section.index, when, victim)
    return f"sub-directory {victim} deleted with {swept} files"


def dir_rename(s: Soak, rng: random.Random, section: Section | None) -> str:
    assert section is not None
    away = section.directory.with_name(section.directory.name + ".away")
    with section.ops:
        os.rename(section.directory, away)
        gap = rng.uniform(0.2, 2.5)
        time.sleep(gap)
        os.rename(away, section.directory)
    return f"renamed away, back after {gap:.1f} s"


def dir_unreadable(s: Soak, rng: random.Random, section: Section | None) -> str:
    assert section is not None
    gap = rng.uniform(1.0, 4.0)
    # Writable and searchable, not readable: producers go on writing, the
    # observer can neither list nor watch it.
    section.directory.chmod(0o300)
    try:
        time.sleep(gap)
    finally:
        section.directory.chmod(0o755)
    return f"mode 300 for {gap:.1f} s"
