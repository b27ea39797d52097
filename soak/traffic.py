"""
The soak's producers and consumers: one thread of each per section.

A L{Producer} writes its section's files at a varying pace (a normal pace,
quiet spells, busy spells, bursts of hundreds of files at once) in the ways
its kind asks for (L{soak.kinds.SectionKind.styles}):

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

A L{Consumer} drains its section's queue the way a worker does (a list:
C{BRPOP} then C{RPOP} of what else is there; a stream: C{XREADGROUP} and
C{XACK}), survives Redis going away, and deletes most files it received
(at once or a little later) and keeps a few.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from .backlog import Backlog
from .kinds import STREAM, Section
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


class Consumer(threading.Thread):
    """
    Drains one section's queue like a worker (see the module docstring).

    @ivar events: events received; @ivar files: files received (first events).
    @ivar errors: Redis errors survived (reconnections).
    """

    GROUP = "soak"

    def __init__(self, section: Section, ledger: Ledger, where: Callable[[], tuple[str, int]], seed: int) -> None:
        """@param where: the address of the Redis master now."""
        super().__init__(name=f"consumer-{section.name}", daemon=True)
        self.section = section
        self.ledger = ledger
        self.where = where
        self.rng = random.Random(seed)
        self.events = 0
        self.files = 0
        self.errors = 0
        self.last_error = ""
        self.failed: BaseException | None = None
        self._finish = threading.Event()
        self._later: list[tuple[float, int, int]] = []  # (due, tries, id)
        self._stream_ready = False
        self.backlog = Backlog(section, ledger)

    def finish(self) -> None:
        """Stop once the queue has stayed empty for a second."""
        self._finish.set()

    def _connect(self) -> Any:
        import valkey

        # A long socket timeout: a Redis stopped by a fault answers later,
        # and a worker that gave up on a BRPOP in flight would lose the
        # event Redis pops for it when it resumes.
        host, port = self.where()
        return valkey.Valkey(host=host, port=port, socket_timeout=30, socket_connect_timeout=2)

    def run(self) -> None:
        import valkey

        client: Any = None
        quiet_since: float | None = None
        try:
            while True:
                # What was taken is kept in got as it comes: a BRPOP's event
                # is this consumer's alone once Redis popped it, and must be
                # handled even when what follows it on the connection fails
                # (a master paused and killed between the BRPOP and the RPOP
                # lost a file of the once section for good: its record says
                # it was announced).
                got: list[tuple[str, float, str, Any]] = []
                broken = False
                try:
                    client = client or self._connect()
                    if self.section.kind.reader == STREAM:
                        got = self._read_stream(client)
                    else:
                        self._read_list(client, got)
                    self.backlog.sample(client)
                except (ConnectionError, valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError,
                        valkey.exceptions.BusyLoadingError, valkey.exceptions.ReadOnlyError) as e:
                    # Redis went away, or this node is a replica now: ask
                    # where the master is, like a Sentinel-aware worker.
                    self.errors += 1
                    self.last_error = str(e)
                    self._stream_ready = False
                    if client is not None:
                        client.close()
                        client = None
                    broken = True
                now = time.time()
                for name, stamp, event, ident in got:
                    if self.section.kind.once and not _an_id(ident):
                        self.ledger.refused(self.section.index, name, now, f"its id is {ident!r}, not 24 hex digits")
                    self._handle(name, stamp, event, now)
                if broken:
                    time.sleep(0.05)
                    continue
                self._delete_due(now)
                if got:
                    quiet_since = None
                elif self._finish.is_set():
                    quiet_since = quiet_since or now
                    if now - quiet_since >= 1.0:
                        return
        except BaseException as e:
            self.failed = e
        finally:
            self.backlog.close(time.time())
            if client is not None:
                client.close()

    # -- reading ----------------------------------------------------------------------

    def _read_list(self, client: Any, got: list[tuple[str, float, str, Any]]) -> None:
        """Take a list's events into C{got}, each as soon as Redis gave it (see L{run})."""
        queue = self.section.queue
        item = client.brpop([queue], timeout=0.2)
        if item:
            got.append(list_event(item[1]))
            got.extend(map(list_event, client.rpop(queue, 1000) or ()))

    def _read_stream(self, client: Any) -> list[tuple[str, float, str, Any]]:
        import valkey

        queue = self.section.queue
        start = ">"
        if not self._stream_ready:
            try:
                client.xgroup_create(queue, self.GROUP, id="0", mkstream=True)
            except valkey.exceptions.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            self._stream_ready = True
            start = "0"  # what was delivered to us and not acknowledged
        try:
            reply = client.xreadgroup(self.GROUP, "worker", {queue: start}, count=1000, block=200)
        except valkey.exceptions.ResponseError as e:
            if "NOGROUP" in str(e):  # Redis restarted empty
                self._stream_ready = False
                return []
            raise
        out, ids = [], []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                ids.append(entry_id)
                out.append((*stream_event(fields), fields.get(b"id")))
        if ids:
            client.xack(queue, self.GROUP, *ids)
            client.xdel(queue, *ids)
        return out

    # -- files ------------------------------------------------------------------------------

    def _handle(self, name: str, stamp: float, event: str, now: float) -> None:
        self.events += 1
        i = self.ledger.receive(self.section.index, name, stamp, now, event)
        if i is None:
            return
        self.files += 1
        roll = self.rng.random()
        if roll < self.section.kind.keep:
            return
        if roll < 0.8:
            self._remove(i, 0)
        else:
            heapq.heappush(self._later, (now + self.rng.uniform(5, 60), 0, i))

    def _delete_due(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            _, tries, i = heapq.heappop(self._later)
            self._remove(i, tries)

    def _remove(self, i: int, tries: int) -> None:
        ledger = self.ledger
        path = os.fsencode(os.path.join(str(self.section.directory), ledger.relative(i)))
        try:
            if ledger.name(i).startswith("d"):
                os.rmdir(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            # Its directory is renamed away for a while (or was deleted).
            if tries < 3:
                heapq.heappush(self._later, (time.time() + 5, tries + 1, i))
            return
        except OSError:
            return  # a sub-directory a fault filled, say: keep it
        ledger.removed(i, time.time(), consumed=True)


def _an_id(ident: Any) -> bool:
    """Whether C{ident} is an event's C{id} (C{extra_fields = id}): 24 hexadecimal digits."""
    if isinstance(ident, bytes):
        ident = ident.decode("ascii", "replace")
    return isinstance(ident, str) and len(ident) == 24 and all(c in "0123456789abcdef" for c in ident)


def list_event(raw: bytes) -> tuple[str, float, str, Any]:
    """(filename, event_timestamp, event, id) of a list's event (its JSON)."""
    event = json.loads(raw)
    return event["filename"], float(event["event_timestamp"]), event["event"], event.get("id")


def stream_event(fields: dict) -> tuple[str, float, str]:
    """(filename, event_timestamp, event) of a stream entry: its fields, or one JSON field."""
    if b"filename" in fields:
        name = fields[b"filename"].decode("utf-8", "surrogateescape")
        return name, float(fields.get(b"event_timestamp", b"nan")), fields.get(b"event", b"").decode()
    for value in fields.values():
        try:
            event = json.loads(value)
        except ValueError:
            continue
        if isinstance(event, dict) and "filename" in event:
            return event["filename"], float(event["event_timestamp"]), event.get("event", "")
    raise ValueError(f"a stream entry without a file name: {fields!r}")
