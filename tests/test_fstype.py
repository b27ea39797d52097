"""
Which filesystems C{watch_mode = auto} polls: the C{statfs} magic numbers
(as linux/magic.h and the kernel's CIFS and FUSE code define them), and the
real C{statfs} call on the filesystems this machine has.
"""

from __future__ import annotations

import os

import pytest

from dirobserver.config.settings import WATCH_AUTO, WATCH_INOTIFY, WATCH_POLL
from dirobserver.sources import fstype

REMOTE = {
    "NFS": 0x6969,
    "SMB": 0x517B,
    "CIFS": 0xFF534D42,
    "SMB2": 0xFE534D42,
    "9p": 0x01021997,
    "Ceph": 0x00C36400,
    "FUSE": 0x65735546,  # sshfs, GlusterFS's client, s3fs...
    "AFS": 0x6B414653,
    "Coda": 0x73757245,
}
LOCAL = {
    "ext4": 0xEF53,
    "xfs": 0x58465342,
    "btrfs": 0x9123683E,
    "tmpfs": 0x01021994,
    "overlayfs": 0x794C7630,
    "zfs": 0x2FC12FC1,
}


@pytest.mark.parametrize("name", sorted(REMOTE))
def test_network_and_fuse_filesystems_are_remote(name):
    assert fstype.remote_kind(REMOTE[name]) == name


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_local_filesystems_are_not(name):
    assert fstype.remote_kind(LOCAL[name]) is None


def test_a_negative_f_type_of_a_32_bit_system_is_read_as_unsigned():
    # f_type is a signed long: CIFS's 0xFF534D42 is negative in 32 bits.
    assert fstype.remote_kind(0xFF534D42 - (1 << 32)) == "CIFS"


@pytest.mark.process
def test_statfs_reads_the_real_type(tmp_path):
    if os.path.isdir("/dev/shm"):
        assert fstype.statfs_type("/dev/shm") == LOCAL["tmpfs"]
    assert fstype.statfs_type(b"/proc") == 0x9FA0  # PROC_SUPER_MAGIC
    with pytest.raises(OSError) as missing:
        fstype.statfs_type(tmp_path / "nothing")
    assert missing.value.errno == 2


def test_auto_polls_a_remote_filesystem_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(fstype, "statfs_type", lambda path: REMOTE["NFS"])
    mode, why = fstype.choose_mode(WATCH_AUTO, str(tmp_path))
    assert mode == WATCH_POLL
    assert why == "on NFS (statfs type 0x6969)"


@pytest.mark.process
def test_auto_uses_inotify_on_a_local_filesystem_or_when_it_cannot_tell(tmp_path):
    assert fstype.choose_mode(WATCH_AUTO, str(tmp_path)) == (WATCH_INOTIFY, None)
    assert fstype.choose_mode(WATCH_AUTO, str(tmp_path / "missing")) == (WATCH_INOTIFY, None)


def test_an_explicit_mode_is_kept_without_statfs(monkeypatch):
    def no_statfs(path):
        raise AssertionError("statfs called")

    monkeypatch.setattr(fstype, "statfs_type", no_statfs)
    assert fstype.choose_mode(WATCH_POLL, "/x") == (WATCH_POLL, None)
    assert fstype.choose_mode(WATCH_INOTIFY, "/x") == (WATCH_INOTIFY, None)
