"""
The soak's producers: one thread per section (L{Producer}), which writes
its section's files at a varying pace (a normal pace, quiet spells, busy
spells, bursts of hundreds of files at once) in the ways its kind asks for
(L{soak.kinds.SectionKind.styles}):

 - C{quick}: created, written and closed at once; C{odd}: the same with a
   name holding a space, an accent, a byte that is not UTF-8 and a newline;
 - C{slow}: written in chunks over up to four seconds, then closed;
 - C{staged}: written under a staging name, closed, then renamed into place
   (sometimes seconds later);
 - C{abandoned}: deleted again before it is complete (never due);
 - C{ignored}: a name the section's filters refuse (never to be announced);
 - C{entry}: a sub-directory (announced with C{subdirectories = true});
 - C{nested}: a file in a new sub-directory (trees), up to the kind's
   C{depth} levels down;
 - C{moved}: a file in a sub-directory being filled (C{wNNN}, up to
   C{depth} levels down), which is renamed within the tree (to C{nNNN})
   once it holds L{PER_SUBDIR} files: its files were announced under one
   name and are found under another.

Every step runs under the section's C{ops} lock, which a directory fault
holds for its whole duration.  Everything is reported to the L{Ledger}.
What the producers make, the consumers (L{soak.consumer}) take.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import threading
import time
from collections.abc import Callable

from .kinds import Section
from .ledger import Ledger

FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
#: Seconds between two turns of a producer.
TICK = 0.01
#: Nested files per new sub-directory (trees).
PER_SUBDIR = 20


class Producer(threading.Thread):
    """
    Writes one section's files (see the module docstring).

    @ivar made: files it made complete (bursts included).
    """

    def __init__(self, section: Section, ledger: Ledger, seed: int, scale: float, halt: threading.Event) -> None:
        super().__init__(name=f"producer-{section.name}", daemon=True)
        self.section = section
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.rate = section.kind.rate * scale
        self.halt = halt
        self.made = 0
        self.failed: BaseException | None = None
        styles = section.kind.styles
        self._styles, self._weights = list(styles), list(styles.values())
        #: (due, sequence, step): the later steps of files being written
        self._later: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._subdir: str | None = None
        self._in_subdir = 0
        #: the sub-directory being filled for C{moved} files: its top, where the files go
        self._filling: tuple[str, str] | None = None
        self._in_filling = 0
        # A settle is a promise of the writer: it never pauses that long
        # before the file is complete (else the file is complete by that
        # rule, and its announcement is not early).
        settle = section.kind.settle()
        self._pause = 0.8 * settle if settle else 1.5

    def path(self, relative: str) -> bytes:
        return os.fsencode(os.path.join(str(self.section.directory), relative))

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # reported by the soak as a failure of the run
            self.failed = e
        finally:
            with self.section.ops:
                self._finish_all()

    def _loop(self) -> None:
        rng, credit, last = self.rng, 0.0, time.time()
        pace, pace_until = 1.0, 0.0
        while not self.halt.is_set():
            now = time.time()
            burst = 0
            if now >= pace_until:
                pace = rng.choices((1.0, 0.2, 3.0), (60, 20, 20))[0]
                pace_until = now + rng.uniform(2.0, 12.0)
                if rng.random() < 0.2:
                    burst = int(rng.uniform(200, 2000) * min(1.0, self.rate / 30))
            credit += (now - last) * self.rate * pace
            last = now
            count, credit = int(credit), credit - int(credit)
            with self.section.ops:
                for _ in range(count + burst):
                    self.start_file(self._pick())
                self._run_due(now)
            time.sleep(TICK)

    def _pick(self) -> str:
        return self.rng.choices(self._styles, self._weights)[0]

    def _later_step(self, delay: float, step: Callable[[], None]) -> None:
        heapq.heappush(self._later, (time.time() + delay, next(self._sequence), step))

    def _run_due(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            heapq.heappop(self._later)[2]()

    def _finish_all(self) -> None:
        """The run ends: every file being written gets its last step now."""
        while self._later:
            heapq.heappop(self._later)[2]()

    def burst(self, count: int) -> int:
        """C{count} quick files at once (a fault's burst); how many were made."""
        with self.section.ops:
            for _ in range(count):
                self.start_file("quick")
        return count

    # -- the styles -----------------------------------------------------------------

    def start_file(self, style: str) -> None:
        """Begin (and for most styles, finish) one file of C{style}."""
        ledger, rng = self.ledger, self.rng
        subdir = None
        if style == "nested":
            # A new sub-directory every few files, or when a fault swept the last one away.
            if (self._subdir is None or self._in_subdir >= PER_SUBDIR
                    or not os.path.isdir(self.path(self._subdir))):
                self._subdir = self._below(f"n{len(ledger.section):09d}")
                os.makedirs(self.path(self._subdir))
                self._in_subdir = 0
            self._in_subdir += 1
            subdir = self._subdir
        elif style == "moved":
            subdir = self._fill()
        i = ledger.new(self.section.index, style, subdir)
        if style == "entry":
            ready = time.time()
            os.mkdir(self.path(ledger.relative(i)))
            self._done(i, ready)
            return
        final = self.path(ledger.relative(i))
        target = self.path(ledger.staging_name(i)) if style == "staged" else final
        fd = os.open(target, FLAGS, 0o644)
        os.write(fd, b"x" * rng.randrange(0, 2048))
        wrote = time.time()
        if style == "slow":
            chunks = rng.randrange(2, 8)
            self._later_step(rng.uniform(0.1, min(0.6, self._pause)),
                             lambda: self._slow(i, fd, chunks - 1, wrote, 0.0))
        elif style == "abandoned":
            self._later_step(rng.uniform(0.05, self._pause), lambda: self._abandon(i, fd, final, wrote))
        elif style == "staged":
            ready = time.time()
            os.close(fd)
            if rng.random() < 0.3:
                self._later_step(rng.uniform(0.2, 2.0), lambda: self._rename(i, target, final))
            else:
                self._rename(i, target, final)
        else:
            ready = time.time()
            os.close(fd)
            self._done(i, ready)

    def _below(self, top: str) -> str:
        """C{top}, or a path a few levels below it (up to the kind's C{depth})."""
        depth = self.section.kind.depth
        return top if depth <= 1 else "/".join([top, *"abc"[:self.rng.randrange(depth)]])

    def _fill(self) -> str:
        """
        The sub-directory where the next C{moved} file goes: a full one is
        renamed within the tree first (C{wNNN} to C{nNNN}, and the ledger
        told), and a new one made.
        """
        if self._filling is not None:
            top, where = self._filling
            if not os.path.isdir(self.path(where)):
                self._filling = None  # a fault swept it away
            elif self._in_filling >= PER_SUBDIR:
                final = "n" + top[1:]
                os.rename(self.path(top), self.path(final))
                self.ledger.moved(self.section.index, top, final)
                self._filling = None
        if self._filling is None:
            top = f"w{len(self.ledger.section):09d}"
            self._filling = (top, self._below(top))
            os.makedirs(self.path(self._filling[1]))
            self._in_filling = 0
        self._in_filling += 1
        return self._filling[1]

    def _done(self, i: int, ready: float, pause: float = 0.0) -> None:
        self.ledger.completed(i, ready, time.time(), pause)
        self.made += 1

    def _slow(self, i: int, fd: int, left: int, last: float, longest: float) -> None:
        # The pauses are measured, not assumed: a stalled thread makes
        # them longer than planned (see Ledger.completed).
        longest = max(longest, time.time() - last)
        os.write(fd, b"y" * self.rng.randrange(1, 4096))
        last = time.time()
        if left > 0 and not self.halt.is_set():
            self._later_step(self.rng.uniform(0.1, min(0.6, self._pause)),
                             lambda: self._slow(i, fd, left - 1, last, longest))
            return
        ready = time.time()
        os.close(fd)
        self._done(i, ready, max(longest, ready - last))

    def _abandon(self, i: int, fd: int, path: bytes, wrote: float) -> None:
        pause = time.time() - wrote
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # swept away with its directory already
        self.ledger.removed(i, time.time())
        self.ledger.completed(i, time.time(), None, pause)
        os.close(fd)

    def _rename(self, i: int, staging: bytes, final: bytes) -> None:
        ready = time.time()
        try:
            os.rename(staging, final)
        except FileNotFoundError:
            # Its directory was deleted (and recreated) since it was written.
            self.ledger.completed(i, ready, None)
            return
        self._done(i, ready)
