"""
Filing a processed file: into done/ or failed/, or deleted.

What is filed is what the command left in the private directory of its
claim (L{dirobserver.worker.claim}): the file itself, usually; nothing if
the command consumed it; C{a.csv} and C{a.csv.gz} after C{gzip -k}; only
C{a.csv.gz} after C{gzip}.  A sub-directory the command made there is left
in place (and named in the log line).

The destination keeps the file's path relative to the section's directory
(C{DIR/sub/a.csv} -> C{DONE/sub/a.csv}), its directories made as needed.

Never an overwrite: the file is hard-linked to the destination name
(C{link(2)} fails when the name exists, atomically, where a check then a
rename would race another worker filing a file of the same name), then its
claimed name is removed.  A name clash gets a counter before the extension:
C{a.csv}, C{a.1.csv}, C{a.2.csv}...

Across filesystems (C{EXDEV}), or on one that has no hard links, the file is
copied into a temporary name in the destination directory (ending with
C{.working}, so an observer watching done/ ignores it), flushed to disk
(C{fsync}), linked to its final name (no overwrite as above), and only then
removed from the claim.  An interruption at any point leaves the claimed
file where it was (recovered and run again, at least once) and at worst a
temporary file, never a loss.  A crash between the link and the removal
leaves the file in both places: recovered, it is run and filed again (under
a suffixed name), which is the price of never losing one.

These are blocking calls; the worker runs them in a thread (a copy may be long).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator

#: Errors of C{link(2)} that mean "no hard link possible here": copy instead.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK}


def candidates(destination: str) -> Iterator[str]:
    """C{destination}, then C{a.1.csv}, C{a.2.csv}... (the counter before the extension)."""
    yield destination
    head, base = os.path.split(destination)
    stem, extension = os.path.splitext(base)
    number = 1
    while True:
        yield os.path.join(head, f"{stem}.{number}{extension}")
        number += 1


def file_into(claimed: str, destination: str, temporary_name: str) -> str:
    """
    Move C{claimed} to C{destination} (or a suffixed name), never overwriting.

    @param temporary_name: the base name of the copy while it is written,
        when the move crosses filesystems (ends with C{.working}).
    @return: the path the file now has.
    @raise OSError: the file could not be filed (it is still at C{claimed}).
    """
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    try:
        final = _link(claimed, destination)
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
        final = _copy(claimed, destination, temporary_name)
    os.unlink(claimed)
    return final


def _link(source: str, destination: str) -> str:
    for candidate in candidates(destination):
        try:
            os.link(source, candidate)
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")  # candidates() never ends


def _copy(claimed: str, destination: str, temporary_name: str) -> str:
    directory = os.path.dirname(destination)
    temporary = os.path.join(directory, temporary_name)
    try:
        with open(claimed, "rb") as source, open(temporary, "xb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        shutil.copystat(claimed, temporary)
        try:
            final = _link(temporary, destination)
        except OSError as e:
            if e.errno not in _NO_LINK:
                raise
            final = _rename_unless_taken(temporary, destination)
        else:
            os.unlink(temporary)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_directory(directory)
    return final


def _rename_unless_taken(source: str, destination: str) -> str:
    # A filesystem without hard links: no atomic "no overwrite" there, so
    # a check then a rename (two workers filing the same name at the same
    # instant could race; only there).
    for candidate in candidates(destination):
        if not os.path.lexists(candidate):
            os.rename(source, candidate)
            return candidate
    raise AssertionError("unreachable")


def _sync_directory(directory: str) -> None:
    """Make a new name in C{directory} durable before the source goes."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the data is synced
    finally:
        os.close(fd)


def _entries(private: str) -> tuple[list[str], list[str]]:
    """The files in C{private}, and the names of what is not a file (left alone)."""
    files, others = [], []
    for name in sorted(os.listdir(private)):
        path = os.path.join(private, name)
        if os.path.isdir(path) and not os.path.islink(path):
            others.append(name)
        else:
            files.append(name)
    return files, others


def file_all(private: str, destination: str) -> tuple[list[str], list[str]]:
    """
    File every file in C{private} (a claim's directory) into the directory
    C{destination}, each under its own name (or a suffixed one).

    @return: the paths they now have, and the names left in C{private}.
    @raise OSError: one could not be filed (it, and those not yet filed,
        are still in C{private}).
    """
    files, others = _entries(private)
    claim_name = os.path.basename(private).lstrip(".")  # "a.csv.W.working"
    filed = [file_into(os.path.join(private, name), os.path.join(destination, name),
                       f".{name}.{claim_name}") for name in files]
    return filed, others


def delete_all(private: str) -> list[str]:
    """C{--delete}: remove every file in C{private}; the names left there."""
    files, others = _entries(private)
    for name in files:
        os.unlink(os.path.join(private, name))
    return others


def file_claim(private: str, destination: str | None) -> str:
    """
    File what a claim's directory C{private} holds into C{destination}, or
    delete it (None: C{--delete}), then remove the directory.

    @return: what happened, for the log line.
    """
    if destination is None:
        left = delete_all(private)
        outcome = "deleted"
    else:
        filed, left = file_all(private, destination)
        outcome = "filed as " + ", ".join(filed) if filed else "the command left no file to file"
    try:
        os.rmdir(private)
    except OSError:
        pass  # what is left there stays (named below)
    if left:
        outcome += f" (left in {private}: {', '.join(left)})"
    return outcome
