"""
The soak's consumers: one thread per section (L{Consumer}; but for the
worker's section, see L{soak.working}), which drains its section's queue
the way a worker does (a list: C{BRPOP} then C{RPOP} of what else is
there; a stream: C{XREADGROUP} and C{XACK}), survives Redis going away,
and deletes most files it received (at once or a little later) and keeps
a few.  Everything is reported to the L{Ledger}.

An event's fields as a consumer reads them: L{list_event} (a list's JSON)
and L{stream_event} (a stream entry's fields, or one JSON field; the
faults read the streams' queues with it too,
L{soak.process_faults.pause_and_read}).  The files come from the
producers (L{soak.producer}).
"""

from __future__ import annotations

import heapq
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


class Consumer(threading.Thread):
    """
    Drains one section's queue like a worker (see the module docstring).

    @ivar events: events received; @ivar files: files received (first events).
    @ivar errors: Redis errors survived (reconnections).
    @ivar refusals: reads refused for a while (C{NOREPLICAS}), tried again.
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
        self.refusals = 0
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
                except valkey.exceptions.ResponseError as e:
                    if "NOREPLICAS" not in str(e):
                        raise
                    # A master with min-replicas-to-write whose replica is
                    # resynchronising refuses writes, and BRPOP, RPOP,
                    # XREADGROUP and XACK are writes: a refused one took
                    # nothing (what a BRPOP took before is in got).  Stream
                    # entries read and not acknowledged are read again.
                    self.refusals += 1
                    self.last_error = str(e)
                    self._stream_ready = False
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
