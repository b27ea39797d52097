"""
What the worker's options decided (L{WorkerConfig}), and which file an
event names (L{locate}): a path under the directory of a section that
pushes to the worker's queue, never a claimed (C{.working}) name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dirobserver.config.settings import RedisSettings
from dirobserver.worker import claim
from dirobserver.worker.queues import BadEvent, Event


@dataclass(frozen=True)
class WorkerConfig:
    """What the options decided (see L{dirobserver.worker.tap})."""

    section: str
    queue: str
    queue_type: str
    #: the directories of every section pushing to this queue
    directories: tuple[str, ...]
    redis: RedisSettings
    command: tuple[str, ...]
    executable: str
    jobs: int
    done: str | None
    failed: str
    timeout: float | None
    reclaim_after: float
    group: str
    worker_id: str


def locate(event: Event, directories: tuple[str, ...]) -> tuple[str, str]:
    """
    The file's path and its path relative to its section's directory.

    @raise BadEvent: the event names no file under those directories.
    """
    name = event.filename
    if not name or "/" in name or name in (".", ".."):
        raise BadEvent(f"filename {name!r} is not a file name")
    if not os.path.isabs(event.directory):
        raise BadEvent(f"directory {event.directory!r} is not absolute")
    path = os.path.normpath(os.path.join(event.directory, name))
    for top in directories:
        top = top.rstrip("/")
        if path.startswith(top + "/"):
            relative = path[len(top) + 1:]
            break
    else:
        raise BadEvent(f"{path!r} is not under the section's directory")
    if any(part.endswith(claim.SUFFIX) for part in relative.split("/")):
        raise BadEvent(f"{path!r} is a claimed (.working) name")
    return path, relative
