"""
The worker's filesystem side, on real directories: claims
(L{dirobserver.worker.claim}) and filing (L{dirobserver.worker.filing}).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dirobserver.config.settings import parse
from dirobserver.worker import claim, filing


def test_a_claim_moves_the_file_into_a_private_working_directory_under_its_own_name(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    claimed = claim.claim(str(tmp_path / "a.csv"), "w1")
    assert claimed == str(tmp_path / ".a.csv.w1.working" / "a.csv")
    assert Path(claimed).read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == [".a.csv.w1.working"]


def test_a_file_claimed_or_gone_cannot_be_claimed_again(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    assert claim.claim(str(tmp_path / "a.csv"), "w1") is not None
    assert claim.claim(str(tmp_path / "a.csv"), "w2") is None
    assert claim.claim(str(tmp_path / "gone.csv"), "w2") is None
    # The loser leaves no empty private directory behind.
    assert sorted(os.listdir(tmp_path)) == [".a.csv.w1.working"]


def test_the_observer_ignores_claim_directories_as_files_and_as_tree_directories(tmp_path: Path) -> None:
    settings = parse(f"[s]\nactive = true\ndirectory = {tmp_path}\nqueue = q\nredis_server = h\nredis_port = 1\n",
                     str(tmp_path / "c.ini"))
    section = settings.sections[0]
    name = claim.claim_directory_name("a.csv", "w1")
    assert not section.accepts(name)
    assert not section.accepts_directory(name)
    assert section.accepts_directory("sub")


def test_a_very_long_name_is_hashed_in_the_claim_and_still_found(tmp_path: Path) -> None:
    base = "x" * 250 + ".csv"
    (tmp_path / base).write_text("x")
    claimed = claim.claim(str(tmp_path / base), "w1")
    assert claimed is not None and os.path.basename(claimed) == base
    assert len(os.path.basename(os.path.dirname(claimed))) <= claim.NAME_MAX
    assert claim.find_claims(str(tmp_path / base)) == {"w1": claimed}


def test_find_claims_names_each_owner_and_reclaim_takes_the_file_over(tmp_path: Path) -> None:
    path = str(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "a.csv.1").write_text("another file")
    claimed = claim.claim(path, "dead-1")
    assert claim.find_claims(path) == {"dead-1": claimed}
    assert claim.find_claims(str(tmp_path / "a.csv.1")) == {}
    mine = claim.reclaim(claimed, path, "live-2")
    assert mine == claim.claimed_path(path, "live-2") and Path(mine).read_text() == "x"
    assert claim.reclaim(claimed, path, "live-3") is None  # taken already
    assert sorted(os.listdir(tmp_path)) == [".a.csv.live-2.working", "a.csv.1"]


def test_a_claim_whose_directory_is_removed_under_it_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Another worker that took this one for dead removed its empty private
    directory between the mkdir and the rename: the claim is made again,
    not taken for a file gone (which would acknowledge its event unrun).
    """
    path = str(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text("x")
    rename, raced = os.rename, []

    def racing(source: str, target: str) -> None:
        if not raced:
            raced.append(target)
            os.rmdir(os.path.dirname(target))
        rename(source, target)

    monkeypatch.setattr(os, "rename", racing)
    claimed = claim.claim(path, "w1")
    assert raced and claimed == claim.claimed_path(path, "w1")
    assert Path(claimed).read_text() == "x" and not os.path.exists(path)


def test_leftovers_are_the_claim_directories_without_the_file(tmp_path: Path) -> None:
    """A claim holding its file is no leftover; an empty one goes, one holding output stays."""
    path = str(tmp_path / "a.csv")
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("x")
    held = claim.claim(path, "w1")
    empty = tmp_path / claim.claim_directory_name("a.csv", "w2")
    empty.mkdir()
    output = tmp_path / claim.claim_directory_name("a.csv", "w3")
    output.mkdir()
    (output / "a.csv.gz").write_text("made by the command")
    (tmp_path / claim.claim_directory_name("b.csv", "w4")).mkdir()
    assert claim.leftovers(path) == {"w2": str(empty), "w3": str(output)}
    assert claim.find_claims(path) == {"w1": held}
    assert claim.remove_leftover(str(empty)) is True and not empty.exists()
    assert claim.remove_leftover(str(output)) is False and (output / "a.csv.gz").exists()
    assert claim.remove_leftover(str(empty)) is None  # already gone


def test_unclaim_puts_the_file_back_unless_a_new_file_took_the_name(tmp_path: Path) -> None:
    path = str(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text("old")
    claimed = claim.claim(path, "w1")
    assert claimed is not None
    (tmp_path / "a.csv").write_text("new")
    assert not claim.unclaim(claimed, path)
    assert (tmp_path / "a.csv").read_text() == "new" and Path(claimed).read_text() == "old"
    os.unlink(path)
    assert claim.unclaim(claimed, path)
    assert sorted(os.listdir(tmp_path)) == ["a.csv"] and (tmp_path / "a.csv").read_text() == "old"


def test_worker_ids_hold_no_dot_so_claim_names_split_without_doubt() -> None:
    worker = claim.new_worker_id()
    assert claim.valid_worker_id(worker) and "." not in worker
    assert not claim.valid_worker_id("a.b")


def _claimed(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    claimed = claim.claim(str(tmp_path / name), "w1")
    assert claimed is not None
    return claimed


def test_filing_keeps_the_relative_path_and_never_overwrites(tmp_path: Path) -> None:
    done = tmp_path / "done"
    (done / "sub").mkdir(parents=True)
    (done / "sub" / "a.csv").write_text("first")
    (done / "sub" / "a.1.csv").write_text("second")
    claimed = _claimed(tmp_path, "a.csv", "third")
    where = filing.file_into(claimed, str(done / "sub" / "a.csv"), ".a.csv.w1.working")
    assert where == str(done / "sub" / "a.2.csv")
    assert [(done / "sub" / n).read_text() for n in ("a.csv", "a.1.csv", "a.2.csv")] == \
        ["first", "second", "third"]
    assert not os.path.exists(claimed)


def test_clash_suffixes_go_before_the_extension() -> None:
    names = filing.candidates("/d/archive.tar.gz")
    assert [next(names) for _ in range(3)] == ["/d/archive.tar.gz", "/d/archive.tar.1.gz",
                                              "/d/archive.tar.2.gz"]
    plain = filing.candidates("/d/README")
    assert [next(plain) for _ in range(2)] == ["/d/README", "/d/README.1"]


def test_a_move_across_filesystems_copies_syncs_then_removes(tmp_path: Path, shm: Path) -> None:
    if os.stat(tmp_path).st_dev == os.stat(shm).st_dev:
        pytest.skip("no second filesystem here (/dev/shm is the same as the test's)")
    claimed = _claimed(tmp_path, "big.bin", "y" * 100_000)
    (shm / "done").mkdir()
    (shm / "done" / "big.bin").write_text("older")
    where = filing.file_into(claimed, str(shm / "done" / "big.bin"), ".big.bin.w1.working")
    assert where == str(shm / "done" / "big.1.bin")
    assert Path(where).read_text() == "y" * 100_000
    assert not os.path.exists(claimed)
    assert sorted(os.listdir(shm / "done")) == ["big.1.bin", "big.bin"]  # no temporary left


def test_an_interrupted_copy_leaves_the_claimed_file_and_no_temporary(tmp_path: Path, shm: Path) -> None:
    if os.stat(tmp_path).st_dev == os.stat(shm).st_dev:
        pytest.skip("no second filesystem here")
    claimed = _claimed(tmp_path, "a.csv", "x")
    (shm / "done").mkdir()
    # The temporary's name is taken (a crash's leftover that is a directory):
    # the copy fails, and nothing is lost.
    (shm / "done" / ".a.csv.w1.working").mkdir()
    with pytest.raises(OSError):
        filing.file_into(claimed, str(shm / "done" / "a.csv"), ".a.csv.w1.working")
    assert Path(claimed).read_text() == "x"
    assert os.listdir(shm / "done") == [".a.csv.w1.working"]


def test_what_the_command_left_in_its_directory_is_filed_and_a_subdirectory_stays(tmp_path: Path) -> None:
    claimed = _claimed(tmp_path, "a.csv", "x")
    private = os.path.dirname(claimed)
    os.unlink(claimed)  # the command consumed its file...
    Path(private, "a.csv.gz").write_text("z")  # ...and left its output next to it
    Path(private, "scratch").mkdir()
    filed, left = filing.file_all(private, str(tmp_path / "done" / "sub"))
    assert filed == [str(tmp_path / "done" / "sub" / "a.csv.gz")] and left == ["scratch"]
    assert os.listdir(private) == ["scratch"]


def test_delete_all_removes_the_files_only(tmp_path: Path) -> None:
    claimed = _claimed(tmp_path, "a.csv", "x")
    private = os.path.dirname(claimed)
    Path(private, "keep").mkdir()
    assert filing.delete_all(private) == ["keep"]
    assert os.listdir(private) == ["keep"]
