"""
The parts of the C{fanotify-tree} benchmark that run without a process: the
directories its burst goes to, the slab deltas, the side-by-side table, and
the main table's line for a skipped workload.  (The workload itself runs in
L{tests.test_bench_smoke}.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench import report
from bench.fanotify_tree import MEASURES, Tree, side_by_side
from bench.kernel import KernelMemory


def test_the_burst_directories_are_the_same_leaves_for_every_run() -> None:
    """Seeded: both modes (and every run) send the burst to the same distinct leaf directories."""
    tree = Tree(Path("/nowhere"), top=30, sub=40, seconds=0.0)
    leaves = tree.leaves(100)
    assert leaves == tree.leaves(100)
    assert len(set(leaves)) == 100
    for leaf in leaves:
        top, sub = leaf.split(b"/")
        assert top.startswith(b"d") and 0 <= int(top[1:]) < 30
        assert sub.startswith(b"e") and 0 <= int(sub[1:]) < 40
    assert leaves != tree.leaves(100, seed=24)
    assert len(tree.leaves(5000)) == 30 * 40  # never more than the tree has
    assert tree.directories == 30 * 41


def test_the_tree_is_left_as_it_was_after_a_burst(tmp_path: Path) -> None:
    """C{clear} removes the burst's files, not the directories."""
    (tmp_path / "d0000" / "e0001").mkdir(parents=True)
    (tmp_path / "d0000" / "e0001" / "s00000001").touch()
    Tree(tmp_path, 1, 2, 0.0).clear([b"d0000/e0001"])
    assert (tmp_path / "d0000" / "e0001").is_dir()
    assert list((tmp_path / "d0000" / "e0001").iterdir()) == []


def _snapshot(caches: dict[str, int], unreclaimable: int) -> KernelMemory:
    memory = KernelMemory.__new__(KernelMemory)
    memory.caches, memory.unreclaimable = caches, unreclaimable
    return memory


def test_kernel_memory_is_the_sum_of_the_cache_deltas() -> None:
    """Each cache's growth in MiB, their sum, and SUnreclaim's; a cache seen only once counts from 0."""
    mib = 1 << 20
    before = _snapshot({"inotify_inode_mark": 2 * mib, "radix_tree_node": 10 * mib}, 100 * mib)
    after = _snapshot({"inotify_inode_mark": 78 * mib, "radix_tree_node": 9 * mib,
                       "fsnotify_mark_connector": 23 * mib}, 200 * mib)
    delta = after.since(before)
    assert delta["slab_inotify_inode_mark_mb"] == 76
    assert delta["slab_radix_tree_node_mb"] == -1
    assert delta["slab_fsnotify_mark_connector_mb"] == 23
    assert delta["marks_mb"] == 98
    assert delta["sunreclaim_mb"] == 100


def test_a_real_snapshot_reads_the_mark_caches() -> None:
    """Where the kernel shows its slab caches (root), the mark caches are found and sized in whole pages."""
    memory = KernelMemory()
    for name, size in memory.caches.items():
        assert name in ("inotify_inode_mark", "fanotify_mark", "fsnotify_mark_connector", "radix_tree_node")
        assert size >= 0 and size % os.sysconf("SC_PAGE_SIZE") == 0


def _run(fan: float, ino: float) -> dict[str, float]:
    run = {}
    for key, *_, compared in MEASURES:
        run[f"fanotify_{key}"], run[f"inotify_{key}"] = fan, ino
        if compared:
            run[f"ratio_{key}"] = fan / ino
    return run


def test_side_by_side_gives_both_modes_and_their_ratio() -> None:
    """One row per measure: the fanotify value, the inotify value, and fanotify / inotify where compared."""
    result = {"figures": report.summarize("fanotify-tree", [_run(2.0, 4.0), _run(3.0, 4.0), _run(4.0, 4.0)])}
    lines = side_by_side(result).splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["figure", "fanotify", "inotify", "fanotify / inotify"]
    assert len(lines) == 2 + len(MEASURES)
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}
    # medians of the three runs, and their ratio
    assert rows["start -> every directory watched"] == ["3.00 s", "4.00 s", "0.75"]
    # a count: the worst run, and no ratio
    assert rows["burst: files never announced (worst run)"] == ["4 files", "4 files", "-"]


def test_the_main_table_shows_the_ratios_with_their_targets_and_a_skip_with_its_reason() -> None:
    results = {
        "fanotify-tree": {"figures": report.summarize("fanotify-tree", [_run(0.5, 1.0)])},
        "idle": {"skipped": "needs root (a fanotify filesystem mark)"},
    }
    text = report.table({"fanotify-tree": "fanotify tree", "idle": "idle"}, results)
    assert "fanotify / inotify: start -> every directory watched" in text
    assert "fanotify: burst: files never announced (worst run)" in text
    assert "inotify: observer peak RSS at the end" not in text  # in the side-by-side table only
    skipped = next(line for line in text.splitlines() if line.startswith("idle"))
    assert "skipped" in skipped and "needs root" in skipped
