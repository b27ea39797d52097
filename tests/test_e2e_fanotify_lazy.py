"""
End-to-end: the lazy fanotify tree (as root) costs nothing per directory.

A tree of 20,000 directories on a tmpfs of its own (mounted by the test,
so that nobody else's directories have events on the marked filesystem)
is watched with one registration (the top's; the watchdog probes in a
TMPDIR on the same tmpfs): no entry per directory, no path remembered before events come, and
afterwards the paths of the directories that had events, no more.  The
figures (time to the ready line and to the end of the start-up listing,
peak RSS) of that tree and of one of 200 directories are printed, not
asserted: they measure, the counts prove.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit import free_port, write_config
from tests.kit.metrics import metric_samples
from tests.test_e2e_fanotify import fanotify
from tests.test_e2e_operations import _get
from tests.test_e2e_trees import warnings_of, write

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(os.geteuid() != 0, reason="a fanotify filesystem mark needs root"),
]


@pytest.fixture
def private_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted for the test alone (root), unmounted at the end."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,nr_inodes=100k", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def deepest(tree: Path, branch: int, depth: int) -> Path:
    """The deepest directory of branch C{branch}: C{dNNN/e0/e1/.../e(depth-1)}."""
    return tree.joinpath(f"d{branch:03d}", *(f"e{level}" for level in range(depth)))


def watched_tree(tmp_path: Path, filesystem: Path, port: int, factory: Any, branches: int,
                 depth: int) -> tuple[Any, str, Path, dict[str, float]]:
    """
    A tree of C{branches} x (C{depth} + 1) directories, watched lazily:
    the started observer, its /metrics address, the tree, and the figures.
    """
    tree = filesystem / f"tree-{branches}x{depth + 1}"
    for branch in range(branches):
        os.makedirs(deepest(tree, branch, depth))
    home = tmp_path / tree.name
    home.mkdir()
    config = write_config(home, {"tree": fanotify(tree)},
                          common={"redis_server": "127.0.0.1", "redis_port": port, "poll_queue_limit": 0})
    metrics = free_port()
    # The watchdog probes the group in a directory of TMPDIR, marking that
    # directory's filesystem whole: on the shared /tmp every other test's
    # directories would have events and be remembered (CI counted 1,006).
    # A TMPDIR on the test's own tmpfs keeps the count the tree's.
    probe_home = filesystem / f"tmp-{tree.name}"
    probe_home.mkdir()
    observer = factory(config, extra_args=[f"--metrics=tcp:{metrics}:interface=127.0.0.1"], cwd=home,
                       env={"TMPDIR": str(probe_home)})
    begun = time.monotonic()
    observer.start(wait_ready=False)
    observer.wait_for_line("dirobserver ready", timeout=60)
    ready = time.monotonic() - begun
    observer.wait_for_line(f"Listed {tree}:", timeout=120)
    listed = time.monotonic() - begun
    with open(f"/proc/{observer.pid}/status") as status:
        peak = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    return observer, f"http://127.0.0.1:{metrics}/metrics", tree, {
        "ready": ready, "listed": listed, "peak_kib": peak}


def scraped(base: str) -> dict:
    status, text = _get(base)
    assert status == 200
    return metric_samples(text)


def test_a_tree_of_20000_directories_registers_only_its_top(
    tmp_path, private_tmpfs, redis_server, observer_factory, collectors
):
    """
    200 branches 100 directories deep: one directory registered and no
    path remembered at the start; a file made in the 10 deepest
    directories of 100 branches is announced, and the paths remembered are
    those 1,000 directories (and the top) at most.
    """
    small, small_base, _small_tree, small_figures = watched_tree(
        tmp_path, private_tmpfs, redis_server.port, observer_factory, 20, 9)
    # The top, and the directory where the watchdog probes the group.
    registered = scraped(small_base)[("dirobserver_fanotify_directories", ())]
    assert registered <= 2
    small.terminate()
    small.wait()

    big, base, tree, figures = watched_tree(tmp_path, private_tmpfs, redis_server.port, observer_factory, 200, 99)
    samples = scraped(base)
    assert samples[("dirobserver_fanotify_directories", ())] == registered  # nothing per directory
    # Nothing remembered per directory: no event yet below the top (the
    # watchdog's probe directory has some, and a late event of the tree's
    # making may name a directory or two).
    assert samples[("dirobserver_fanotify_cached_directories", ())] <= 10
    collector = collectors(redis_server)
    expected = set()
    for branch in range(0, 200, 2):
        directory = deepest(tree, branch, 99)
        for _ in range(10):
            expected.add(write(directory / "f"))
            directory = directory.parent
    missing = collector.wait_all(expected, timeout=60)
    assert not missing, f"{len(missing)} files never announced, e.g. {sorted(missing)[:3]}"
    cached = scraped(base)[("dirobserver_fanotify_cached_directories", ())]
    assert 1_000 <= cached <= 1_005, cached  # and the top's, the probe's
    assert not warnings_of(big)
    assert "cannot be lazy" not in big.output()
    print(f"\nlazy fanotify tree, 200 directories: {small_figures['ready']:.2f} s to ready, "
          f"{small_figures['listed']:.2f} s to listed, peak RSS {small_figures['peak_kib']} KiB; "
          f"20,000 directories: {figures['ready']:.2f} s to ready, {figures['listed']:.2f} s to "
          f"listed, peak RSS {figures['peak_kib']} KiB; {cached} paths remembered after files in "
          f"1,000 directories")


def test_the_top_deleted_then_made_again_is_watched_again_lazily(
    tmp_path, private_tmpfs, redis_server, observer_factory, collectors
):
    """
    The descriptor handles are opened on is the filesystem's root, not the
    top: deleting the top is said at once, and the top made again is a new
    lazy tree whose new sub-directories' files are announced.
    """
    top = private_tmpfs / "in"
    (top / "old").mkdir(parents=True)
    config = write_config(tmp_path, {"tree": fanotify(top)},
                          common={"redis_server": "127.0.0.1", "redis_port": redis_server.port})
    observer = observer_factory(config).start()
    observer.wait_for_line(f"Listed {top}:")
    collector = collectors(redis_server)
    before = write(top / "old" / "before")
    assert not collector.wait_all({before}, timeout=10)
    mark = observer.mark()
    subprocess.run(["rm", "-rf", str(top)], check=True)
    observer.wait_for_line(f"{top} was deleted", since=mark, timeout=10)
    (top / "new" / "deeper").mkdir(parents=True)
    observer.wait_for_line(f"Directory is back, watching {top}", since=mark, timeout=30)
    after = write(top / "new" / "deeper" / "after")
    assert not collector.wait_all({after}, timeout=10)
    assert "cannot be lazy" not in observer.output()
