"""
The reactor the daemon runs in, as one type.

Twisted describes a reactor by many small interfaces (L{IReactorTime},
L{IReactorFDSet}...); the one twistd installs (epoll, poll, select or
asyncio, as C{--reactor} chose) provides all of those the daemon uses.
L{IDaemonReactor} names that set, so one annotation says what the parts
are handed: L{dirobserver.app.tap.makeService} resolves the global reactor
once, as an L{IDaemonReactor}, and every part takes it (or the one
interface it needs) from there.  Tests hand in L{twisted.internet.task.Clock}
or L{twisted.internet.testing.MemoryReactorClock} where a part needs less.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorProcess,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUNIX,
)


class IDaemonReactor(
    IReactorCore, IReactorTime, IReactorFDSet, IReactorProcess, IReactorThreads, IReactorTCP, IReactorUNIX
):
    """
    The reactor twistd installs, as dirobserver uses it:

      - L{IReactorCore}: started and stopped (C{callWhenRunning}, C{stop});
      - L{IReactorTime}: every timer (C{callLater}, C{seconds});
      - L{IReactorFDSet}: the inotify descriptor is read in it;
      - L{IReactorProcess}: the C{--embedded-redis} server is its child;
      - L{IReactorThreads}: signal handlers and reloads hand work to it;
      - L{IReactorTCP}, L{IReactorUNIX}: Redis connections and the
        metrics endpoint.

    A type only: nothing provides it by declaration, and nothing adapts to
    it; L{dirobserver.app.tap.makeService} casts the global reactor to it.
    """
