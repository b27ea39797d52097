"""
Reload on SIGHUP: read the configuration again and apply the difference.

The signal handler itself only asks the reactor to reload on its next turn
(C{callFromThread} is what may be called from a signal handler); SIGHUPs
that arrive before that turn are merged into one reload.  The reload then
runs in the reactor, in one go:

 1. read and validate the whole file; if anything is wrong, log one line
    (file, section, key, problem: the L{ConfigError} text) and keep running
    the configuration as it was;
 2. compare the active sections by name: a new section is watched and
    listed; a removed one stops being watched (what the writer holds for it
    is still delivered); a changed one is replaced by a new monitor (watched
    and listed); an unchanged one is not touched, loses nothing and is not
    listed again;
 3. apply the settings shared by every section: a changed Redis address
    (or password, database, timeout) makes the writer reconnect, keeping
    what it holds; C{max_held_events} and the watchdog's timeout take effect.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application import service
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from dirobserver.config.settings import ConfigError, Settings


class Reloadable(Protocol):
    """What a reload changes (the service tree)."""

    settings: Settings

    def apply_settings(self, new: Settings) -> str:
        """Apply C{new}; return a one-line summary of what changed."""


class Notify(Protocol):
    """
    Who hears of a reload (systemd's notifier).  Each call returns whether
    the news was sent (systemd's notifier: false outside systemd); the
    reload does not depend on it.
    """

    def reloading(self) -> bool:
        """A reload starts."""

    def ready(self, status: str | None = None) -> bool:
        """The reload is over; the daemon serves again."""


class ReloadService(service.Service):
    """
    Reloads the configuration on SIGHUP, while running.

    @ivar reloads: reloads applied.  @ivar refused: reloads refused
        (a bad configuration).
    """

    _log = Logger()
    name = "reload"

    def __init__(
        self,
        target: Reloadable,
        load: Callable[[], Settings],
        reactor: IReactorThreads,
        notify: Notify | None = None,
    ) -> None:
        """
        @param load: reads and validates the configuration file again
            (raises L{ConfigError}).
        """
        self._target = target
        self._load = load
        self._reactor = reactor
        self._notify = notify
        self._pending = False
        self._previous: Any = None
        self.reloads = 0
        self.refused = 0

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        # In a signal handler: no work here, not even a log line.
        if not self._pending:
            self._pending = True
            self._reactor.callFromThread(self.reload)

    def reload(self) -> bool:
        """Read the configuration again and apply it; False if it was refused."""
        self._pending = False
        if not self.running:
            return False
        if self._notify is not None:
            self._notify.reloading()
        try:
            try:
                new = self._load()
            except ConfigError as e:
                self.refused += 1
                self._log.error(
                    "Reload refused, the running configuration is kept: {error}", error=str(e)
                )
                return False
            for warning in new.warnings:
                self._log.warn("{warning}", warning=warning)
            summary = self._target.apply_settings(new)
            self.reloads += 1
            self._log.info("Configuration reloaded from {path}: {summary}",
                           path=new.path, summary=summary)
            return True
        finally:
            if self._notify is not None:
                self._notify.ready()
