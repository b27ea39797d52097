"""
End-to-end: C{watch_mode = fanotify} (one fanotify group, one filesystem
mark per filesystem), with the real daemon run as root, a real
valkey-server and real directories on tmpfs (/dev/shm) and on the disk.

The collector and helpers are the tree tests' (L{tests.test_e2e_trees}):
"all announced" compares sets of paths, so a duplicate (by design, a file
made between a new sub-directory's watch and its reading) does not hide a
missing one; "never announced" is proved by a sentinel made after the
action, since the events of one source come in order.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.kit import section, write_config
from tests.kit.observer import observer_args
from tests.kit.processes import child_env, drop_root_file_access
from tests.test_e2e_trees import start, warnings_of, write

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(os.geteuid() != 0, reason="a fanotify filesystem mark needs root"),
]


def fanotify(directory: Path, **extra: str) -> dict[str, str]:
    return section(directory, recursive="true", watch_mode="fanotify", **extra)


def inotify_watches(pid: int) -> int:
    """How many inotify watches the process holds (C{inotify wd:} lines of its fdinfo)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                count += sum(line.startswith("inotify wd:") for line in f)
        except OSError:
            continue  # closed meanwhile
    return count


def fanotify_marks(pid: int) -> list[str]:
    """The fanotify marks of the process (C{fanotify ...} lines of its fdinfo)."""
    marks = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                marks += [line for line in f if line.startswith("fanotify sdev:")]
        except OSError:
            continue
    return marks


def test_nested_directories_made_at_once_with_files_lose_nothing(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    200 times C{mkdir -p sNNN/a/b && touch} a file in each level: every file
    is announced with the directory that holds it.  The tree costs no
    inotify watch: the process holds fanotify filesystem marks only.
    """
    observer = start(observer_factory, tmp_path, redis_server.port, {"tree": fanotify(shm)})
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    expected = set()
    for i in range(200):
        top = shm / f"s{i:03d}"
        deep = top / "a" / "b"
        deep.mkdir(parents=True)
        for level in (top, top / "a", deep):
            expected.add(write(level / "f"))
    missing = collector.wait_all(expected, timeout=30)
    assert not missing, f"{len(missing)} files never announced, e.g. {sorted(missing)[:5]}"
    assert set(collector.paths()) == expected
    assert inotify_watches(observer.pid) <= 1  # at most the liveness probe's, none per directory
    # One mark for the tree's filesystem, and one for the temporary
    # directory's, where the watchdog probes the group.
    assert 1 <= len(fanotify_marks(observer.pid)) <= 2
    assert not warnings_of(observer)


def test_a_tree_moved_in_then_a_directory_renamed_within(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    A tree made beside the section, then moved in with one rename, is
    announced whole; a sub-directory renamed inside the tree is followed (a
    file made in it afterwards is announced with the new directory); files
    in the sibling directory, outside the section, are never announced.
    """
    watched, outside = shm / "in", shm / "outside"
    watched.mkdir()
    staged = outside / "batch"
    expected = set()
    for i in range(20):
        sub = staged / f"d{i:02d}" / "deeper"
        sub.mkdir(parents=True)
        expected |= {write(sub / f"f{j:02d}") for j in range(10)}
    observer = start(observer_factory, tmp_path, redis_server.port, {"tree": fanotify(watched)})
    observer.wait_for_line(f"Listed {watched}:")
    collector = collectors(redis_server)
    os.rename(staged, watched / "batch")
    moved = {p.replace(str(outside), str(watched)) for p in expected}
    missing = collector.wait_all(moved, timeout=20)
    assert not missing, f"{len(missing)} files of the moved tree never announced"

    os.rename(watched / "batch" / "d03", watched / "batch" / "renamed")
    after = write(watched / "batch" / "renamed" / "deeper" / "after")
    assert not collector.wait_all({after}, timeout=10)
    assert str(watched / "batch" / "d03" / "deeper" / "after") not in collector.paths()

    stray = write(outside / "stray")
    sentinel = write(watched / "sentinel")
    assert not collector.wait_all({sentinel}, timeout=10)
    assert stray not in collector.paths()
    assert not warnings_of(observer)


def test_announce_closed_waits_for_a_slow_writer(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """With C{announce = closed}, a file written slowly is announced once, after its close."""
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"tree": fanotify(shm, announce="closed")})
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    (shm / "sub").mkdir()
    path = shm / "sub" / "slow.dat"
    early = write(shm / "sub" / "early")  # the sub-directory is watched once this is in
    assert not collector.wait_all({early}, timeout=10)
    with open(path, "wb") as f:
        for _ in range(5):
            f.write(b"x" * 100)
            f.flush()
            # The writer's pause; the file is not complete meanwhile.
            sentinel = write(shm / f"tick{time.monotonic_ns()}")
            assert not collector.wait_all({sentinel}, timeout=10)
            assert str(path) not in collector.paths()
    assert not collector.wait_all({str(path)}, timeout=10)
    last = write(shm / "last")
    assert not collector.wait_all({last}, timeout=10)
    assert collector.paths().count(str(path)) == 1


def test_sections_on_two_filesystems_in_one_process(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """A section on tmpfs and one on the disk share one group, with a mark on each filesystem."""
    disk = Path(tempfile.mkdtemp(prefix="dirobserver-fan-", dir="/var/tmp"))
    try:
        assert os.stat(disk).st_dev != os.stat(shm).st_dev
        observer = start(observer_factory, tmp_path, redis_server.port,
                         {"memory": fanotify(shm), "disk": fanotify(disk)})
        observer.wait_for_line(f"Listed {disk}:")
        observer.wait_for_line(f"Listed {shm}:")
        collector = collectors(redis_server)
        (shm / "m").mkdir()
        (disk / "d").mkdir()
        expected = {write(shm / "m" / "f"), write(disk / "d" / "f")}
        assert not collector.wait_all(expected, timeout=10)
        assert len(fanotify_marks(observer.pid)) == 2
    finally:
        subprocess.run(["rm", "-rf", str(disk)], check=False)


def test_auto_chooses_fanotify_for_a_tree(tmp_path, shm, redis_server, observer_factory, collectors):
    """C{watch_mode = auto} with C{recursive = true}: fanotify, said in one line."""
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"tree": section(shm, recursive="true")})
    observer.wait_for_line("watched by fanotify (watch_mode = auto")
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    (shm / "a" / "b").mkdir(parents=True)
    made = write(shm / "a" / "b" / "f")
    assert not collector.wait_all({made}, timeout=10)
    assert inotify_watches(observer.pid) <= 1


def _drop_sys_admin() -> None:
    """preexec_fn: CAP_SYS_ADMIN out of the bounding set: root without it after exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 21, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_SYS_ADMIN
        raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP failed")


def test_an_explicit_request_that_cannot_be_had_is_one_line_and_78(tmp_path, shm, redis_server):
    """Without CAP_SYS_ADMIN, C{watch_mode = fanotify} is refused before the start: one line, exit 78."""
    config = write_config(tmp_path, {"tree": fanotify(shm)},
                          common={"redis_server": "127.0.0.1", "redis_port": redis_server.port})
    done = subprocess.run(observer_args(config), env=child_env({}), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, preexec_fn=_drop_sys_admin)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 78, lines
    assert len(lines) == 1, lines
    assert "[tree] watch_mode = fanotify cannot be had" in lines[0]
    assert "CAP_SYS_ADMIN" in lines[0]


def test_a_directory_unreadable_at_the_start_is_marked_by_its_parent_and_listed_once_readable(
    tmp_path, shm, redis_server, observer_factory, collectors
):
    """
    The kernel wants read permission on the path that names the filesystem
    to mark: a section's directory the daemon cannot read at its start (root
    without the capabilities that bypass permissions) is not a refusal of
    fanotify (exit 78, as the soak met after a restart during such a fault):
    its parent names the filesystem, and the directory is listed once it
    can be read, as an unreadable directory is with inotify.
    """
    top = shm / "in"
    top.mkdir()
    top.chmod(0o300)
    config = write_config(tmp_path, {"tree": fanotify(top)},
                          common={"redis_server": "127.0.0.1", "redis_port": redis_server.port})
    observer = observer_factory(config, preexec_fn=drop_root_file_access).start(wait_ready=False)
    observer.wait_for_line(f"Cannot list {top}: Permission denied; listing it once it can be read",
                           timeout=30)
    assert observer.is_running()
    collector = collectors(redis_server)
    top.chmod(0o755)
    observer.wait_for_line(f"Listed {top}:", timeout=30)
    (top / "sub").mkdir()
    name = write(top / "sub" / "after")
    assert not collector.wait_all({name}, timeout=10)
    assert "cannot be had" not in observer.output()


def test_the_group_made_as_root_keeps_working_after_twistd_drops_privileges(
    tmp_path, redis_server, observer_factory, collectors
):
    """
    C{twistd --uid=nobody}: the group and its mark are made in
    C{privilegedStartService}, before the drop; afterwards, unprivileged, a
    new sub-directory and its file are still announced.
    """
    import pwd

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="dirobserver-fan-uid-", dir="/dev/shm"))
    try:
        root.chmod(0o755)
        watched = root / "in"
        watched.mkdir()
        os.chown(watched, nobody.pw_uid, nobody.pw_gid)
        config = write_config(tmp_path, {"tree": fanotify(watched)},
                              common={"redis_server": "127.0.0.1", "redis_port": redis_server.port})
        observer = observer_factory(config)
        twistd_part = observer.args.index("dirobserver")
        observer.args[twistd_part:twistd_part] = [f"--uid={nobody.pw_uid}", f"--gid={nobody.pw_gid}"]
        observer.start()
        observer.wait_for_line(f"Listed {watched}:")
        # Unprivileged, directories cannot be opened by their handles: the
        # tree registers each one, and says why once.
        observer.wait_for_line("the tree cannot be lazy: opening directories by their handles needs "
                               "CAP_DAC_READ_SEARCH")
        with open(f"/proc/{observer.pid}/status") as status:
            uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
        assert {int(u) for u in uids} == {nobody.pw_uid}
        collector = collectors(redis_server)
        (watched / "sub").mkdir()
        made = write(watched / "sub" / "after-the-drop")
        assert not collector.wait_all({made}, timeout=10)
        assert len(fanotify_marks(observer.pid)) >= 1
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_full_fanotify_queue_loses_no_file(tmp_path, shm, redis_server, observer_factory, collectors):
    """
    The observer is SIGSTOPped while more files than the group's queue holds
    are created in a sub-directory: after SIGCONT the overflow is said, the
    tree is listed again, and every file is announced.
    """
    import signal

    total = int(Path("/proc/sys/fs/fanotify/max_queued_events").read_text()) + 5_000
    (shm / "sub").mkdir()
    observer = start(observer_factory, tmp_path, redis_server.port, {"tree": fanotify(shm)},
                     max_held_events=10 * total)
    observer.wait_for_line(f"Listed {shm}:")
    collector = collectors(redis_server)
    observer.signal(signal.SIGSTOP)
    try:
        expected = {write(shm / "sub" / f"f{i:06d}") for i in range(total)}
    finally:
        observer.signal(signal.SIGCONT)
    missing = collector.wait_all(expected, timeout=60)
    assert not missing, f"{len(missing)} files never announced after the overflow"
    observer.wait_for_line("The kernel fanotify queue overflowed")
    assert observer.is_running()
