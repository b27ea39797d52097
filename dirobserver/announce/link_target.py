"""
A configured directory that is a symbolic link: where it pointed when it
was watched, and whether it points elsewhere now.

The kernel watches what a link pointed to when the watch was set.  A
"current" link switched atomically to a new directory leaves the watch on
the old target, which still exists, so no event says so: the monitor asks
L{LinkTarget.moved} every second (see L{dirobserver.app.core}) and watches
the new target when it did.
"""

from __future__ import annotations

import os

from twisted.logger import Logger


class LinkTarget:
    """Where one section's configured path led when it was last watched."""

    _log = Logger()

    def __init__(self, section: str, directory: str) -> None:
        self._section = section
        self._directory = directory
        #: the target when watched (None: not a link, or not watched)
        self._target: str | None = None

    def watched(self) -> None:
        """The path was just watched: remember its target, and say it, if it is a link."""
        self._target = None
        if os.path.islink(self._directory):
            self._target = os.path.realpath(self._directory)
            self._log.info("[{section}] {directory} is a symbolic link to {target}; watching the target",
                           section=self._section, directory=self._directory, target=self._target)

    def forget(self) -> None:
        """The watch is gone: nothing to compare with until the next."""
        self._target = None

    def moved(self) -> bool:
        """Whether the link now points elsewhere than when watched (said once, then forgotten)."""
        if self._target is None:
            return False
        target = os.path.realpath(self._directory)
        if target == self._target:
            return False
        self._log.warn("[{section}] {directory} now points to {target}: watching the new target",
                       section=self._section, directory=self._directory, target=target)
        self._target = None
        return True
