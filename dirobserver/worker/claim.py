"""
Claiming a file: the atomic rename that makes one worker its only runner.

A file C{DIR/a.csv} is claimed by worker C{W} by renaming it into a private
directory next to it::

    DIR/a.csv  ->  DIR/.a.csv.W.working/a.csv

The directory is made first (C{mkdir}), then the file is renamed into it.
C{rename(2)} is atomic: of two workers (or two events of one file) only one
finds C{DIR/a.csv}; the other gets C{ENOENT} and knows the file is gone or
taken.  The name of the private directory ends with C{.working}, which the
observer ignores, as a file name and as a sub-directory of a tree, so a
claimed file is announced again neither from an event nor from a listing.
The command is given C{DIR/.a.csv.W.working/a.csv}: the file itself (not a
link, not a copy) under its original base name, alone in its directory.

The directory is on the file's own filesystem, so the claim never copies.
A base name so long that the private directory's name would pass
C{NAME_MAX} is replaced there by a hash of it (L{claim_directory_name}).

A worker that dies leaves its claims behind.  L{find_claims} lists the
claims of a base name (their owners' ids are in the names); the caller
decides which owners are dead (their claim key in Redis expired) and
L{reclaim} renames the file into a claim of its own.  A worker killed
between making its private directory and renaming the file into it (or
between filing the file and removing the directory) leaves an empty one:
L{leftovers} lists those, and the worker that takes over the event
removes the dead owners' (L{remove_leftover}).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import socket

#: The suffix the observer always ignores (C{WORKING_PATTERN}).
SUFFIX = ".working"

#: Longest file name most Linux filesystems accept, in bytes.
NAME_MAX = 255

#: Attempts at a claim whose directory is removed under it (see L{claim}).
CLAIM_TRIES = 3

_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def new_worker_id() -> str:
    """
    A worker id: host, process id and a random part, in letters, digits and
    C{-} only (it is part of file names and Redis keys; no C{.}, so that a
    claim's name splits without doubt).
    """
    host = _UNSAFE.sub("-", socket.gethostname()).strip("-")[:24] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def valid_worker_id(text: str) -> bool:
    """Whether C{text} can be a worker id (L{new_worker_id}'s alphabet)."""
    return bool(text) and _UNSAFE.search(text) is None and len(text) <= 64


def _stem(base: str, worker: str) -> str:
    """What stands for C{base} in a claim's name: itself, or a hash when too long."""
    if len(os.fsencode(f".{base}.{worker}{SUFFIX}")) <= NAME_MAX:
        return base
    return "#" + hashlib.sha256(os.fsencode(base)).hexdigest()[:32]


def claim_directory_name(base: str, worker: str) -> str:
    """The name of worker C{worker}'s private directory for file C{base}."""
    return f".{_stem(base, worker)}.{worker}{SUFFIX}"


def claimed_path(path: str, worker: str) -> str:
    """Where C{path} is once claimed by C{worker}."""
    directory, base = os.path.split(path)
    return os.path.join(directory, claim_directory_name(base, worker), base)


def claim(path: str, worker: str) -> str | None:
    """
    Claim C{path} for C{worker}.

    @return: the claimed path, or None when C{path} is not there (gone, or
        claimed by someone else first).
    @raise OSError: the directory cannot be written (the caller reports it).
    """
    target = claimed_path(path, worker)
    private = os.path.dirname(target)
    for _ in range(CLAIM_TRIES):
        try:
            os.mkdir(private, 0o700)
        except FileExistsError:
            pass  # a claim of ours that a crash left behind, or a duplicate event
        try:
            if os.path.lexists(target):
                # Only a crash of this very process could leave it (ids are
                # random per process): never overwrite a claimed file.
                raise FileNotFoundError(errno.EEXIST, "already claimed")
            os.rename(path, target)
        except FileNotFoundError:
            if os.path.lexists(path) and not os.path.isdir(private):
                # Our directory went between mkdir and rename: another
                # worker took this one for a dead one's leftover (its
                # renewals refused for longer than --reclaim-after, say).
                continue
            _remove_directory(private)
            return None
        return target
    raise OSError(errno.ENOENT, "its claim directory kept disappearing", private)


def _claim_directories(path: str) -> dict[str, str]:
    """The private directories of claims of C{path}'s base name, by owner."""
    directory, base = os.path.split(path)
    found: dict[str, str] = {}
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return found
    for name in names:
        if not (name.startswith(".") and name.endswith(SUFFIX)):
            continue
        # ".<stem>.<worker>.working": the worker id holds no ".".
        head, _, worker = name[1:-len(SUFFIX)].rpartition(".")
        if valid_worker_id(worker) and head == _stem(base, worker):
            found[worker] = os.path.join(directory, name)
    return found


def find_claims(path: str) -> dict[str, str]:
    """
    The claims of C{path} present on disk, by owner: C{{worker id: claimed path}}.
    """
    base = os.path.basename(path)
    found: dict[str, str] = {}
    for worker, private in _claim_directories(path).items():
        candidate = os.path.join(private, base)
        if os.path.lexists(candidate):
            found[worker] = candidate
    return found


def leftovers(path: str) -> dict[str, str]:
    """
    The private directories of C{path}'s base name that hold no claimed
    file, by owner: what a worker killed between making one and renaming
    the file into it, or between filing the file and removing it, leaves.
    """
    base = os.path.basename(path)
    return {worker: private for worker, private in _claim_directories(path).items()
            if not os.path.lexists(os.path.join(private, base))}


def remove_leftover(private: str) -> bool | None:
    """
    Remove a dead worker's private directory if it is empty (what its
    command left there stays, and so does the directory).

    @return: True when it went, False when it is not empty, None when it
        was gone already (another worker removed it).
    """
    try:
        os.rmdir(private)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    return True


def reclaim(claimed: str, path: str, worker: str) -> str | None:
    """
    Take over C{claimed} (a dead worker's claim of C{path}) for C{worker}.

    @return: the new claimed path, or None when another worker took it first.
    """
    target = claimed_path(path, worker)
    private = os.path.dirname(target)
    try:
        os.mkdir(private, 0o700)
    except FileExistsError:
        pass
    try:
        os.rename(claimed, target)
    except FileNotFoundError:
        _remove_directory(private)
        return None
    _remove_directory(os.path.dirname(claimed))
    return target


def unclaim(claimed: str, path: str) -> bool:
    """
    Put a claimed file back at C{path} (a stop that gives its event back).

    @return: whether it went back; when a new file took the name meanwhile,
        the claim stays (found and recovered with the event later).
    """
    try:
        os.link(claimed, path)
    except FileExistsError:
        return False
    except OSError:
        return False
    os.unlink(claimed)
    release(claimed)
    return True


def release(claimed: str) -> None:
    """Remove the private directory of a claim, once its file has left it."""
    _remove_directory(os.path.dirname(claimed))


def _remove_directory(private: str) -> None:
    try:
        os.rmdir(private)
    except OSError:
        pass  # not empty (a file someone put there stays), or already gone
