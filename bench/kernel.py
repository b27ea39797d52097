"""
What the kernel keeps for a watcher, read from outside the observer: the
slab caches that hold fsnotify marks, and the inotify watch limit.

An inotify watch is an C{inotify_inode_mark}, a C{fsnotify_mark_connector}
on the inode, and a slot of the instance's IDR (C{radix_tree_node}s); a
fanotify filesystem mark is one mark and one connector for the whole
filesystem.  With SLUB, caches of objects of one size are merged: the mark
caches share one cache with C{sigqueue} and the connectors one with others
(C{/sys/kernel/slab/NAME} is then a link to the merged cache), so a delta
is that of the merged cache: other work on the machine adds noise.  Each
merged cache is counted once.  C{SUnreclaim} of C{/proc/meminfo} is given
too, as the whole kernel's view.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the caches of fsnotify marks, connectors, and the IDR of inotify's watch descriptors
MARK_CACHES = ("inotify_inode_mark", "fanotify_mark", "fsnotify_mark_connector", "radix_tree_node")

_SLAB = Path("/sys/kernel/slab")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")


def _first(text: str) -> int:
    """C{"1267 N0=1267"} -> 1267."""
    return int(text.split()[0])


def slab_bytes(names: tuple[str, ...] = MARK_CACHES) -> dict[str, int]:
    """
    Bytes of slab pages held by each cache of C{names}, merged caches once
    (the key is the first of its names asked for); empty when the kernel
    shows neither C{/sys/kernel/slab} nor C{/proc/slabinfo} (not root).
    """
    if _SLAB.is_dir():
        seen: dict[str, str] = {}
        for name in names:
            path = _SLAB / name
            if path.exists():
                seen.setdefault(os.path.realpath(path), name)
        out = {}
        for real, name in seen.items():
            try:
                slabs = _first(Path(real, "slabs").read_text())
                order = _first(Path(real, "order").read_text())
            except (OSError, ValueError, IndexError):
                continue
            out[name] = slabs * (_PAGE << order)
        return out
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        cells = line.split()
        if cells and cells[0] in names:
            # name active total size per-slab pages-per-slab : tunables ... : slabdata active total shared
            found[cells[0]] = int(cells[-2]) * int(cells[5]) * _PAGE
    return found


def unreclaimable_slab() -> int:
    """C{SUnreclaim} of C{/proc/meminfo}, in bytes (0 when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SUnreclaim:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class KernelMemory:
    """A snapshot of L{slab_bytes} and L{unreclaimable_slab}, to subtract from a later one."""

    def __init__(self) -> None:
        self.caches = slab_bytes()
        self.unreclaimable = unreclaimable_slab()

    def since(self, before: KernelMemory) -> dict[str, float]:
        """MiB gained since C{before}: C{marks_mb} (the caches, together), C{sunreclaim_mb}, and each cache."""
        mib = float(1 << 20)
        per = {f"slab_{name}_mb": (self.caches.get(name, 0) - before.caches.get(name, 0)) / mib
               for name in sorted(set(self.caches) | set(before.caches))}
        return {"marks_mb": sum(per.values()), "sunreclaim_mb": (self.unreclaimable - before.unreclaimable) / mib,
                **per}


@contextmanager
def inotify_watches(needed: int) -> Iterator[int]:
    """
    C{fs.inotify.max_user_watches} at least C{needed} while the block runs,
    restored after; yields the limit in force.  Needs root to raise it.
    """
    old = int(_WATCHES.read_text())
    if old >= needed:
        yield old
        return
    _WATCHES.write_text(f"{needed}\n")
    try:
        yield needed
    finally:
        _WATCHES.write_text(f"{old}\n")
