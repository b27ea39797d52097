"""
The Redis side of the soak: one server, or a Sentinel set, both the kit's
(L{tests.kit.redis_server}, L{tests.kit.sentinel}).

Both give the faults and the consumers the same few things: the
configuration lines of the observer's C{[common]} section, where the master
is now (L{where}), and the faults on it: SIGKILL and restart (L{kill},
L{restart}), SIGSTOP and SIGCONT (L{pause}, L{resume}), and an outage long
enough to exceed C{max_held_events} (L{outage}, L{outage_end}).

L{SentinelSet} (chosen when the observer knows C{redis_sentinels}) runs a
master, a replica and three Sentinels from the same valkey-server binary
(C{--sentinel}, C{down-after-milliseconds 1000}); it adds the faults
C{SENTINEL FAILOVER} (L{failover}) and the master SIGKILLed until a replica
takes over (L{kill}).  A node killed or demoted comes back as a replica of
the master the Sentinels name.  Every fault that fails the master over
waits first until its replica is in sync (L{SentinelSet._whole_before}), so
that a failover loses what a failover loses, not Redis's whole data.  The
nodes run C{min-replicas-to-write 1} (L{NODE_ARGS}), and each fault ends
only once the master takes writes again (L{SentinelSet._writable_after}).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.kit import RedisServer, Resources, sentinel as kit_sentinel

MASTER_NAME = "soak"

#: Extra options of every node of a Sentinel set: a master without a
#: replica in sync refuses writes (NOREPLICAS), as docs/operations.md
#: advises beside announce_once, so that a failover cannot lose what the
#: master acknowledged while its replica resynchronised (run 10 of
#: docs/soak.md: 19,947 record fields at one kill without it, run 8: none
#: with it).  Its refusals outlast the fault that made the replica
#: resynchronise, so each fault that does ends only once the master takes
#: writes again (L{SentinelSet._takes_writes}); run 9 judged files by the
#: shorter window.
NODE_ARGS: tuple[str, ...] = ("--min-replicas-to-write", "1")


class Single:
    """One valkey-server, restarted empty after a kill."""

    sentinel = False

    def __init__(self, resources: Resources, workdir: Path) -> None:
        self.server = resources.server(RedisServer(workdir=workdir, loglevel="warning")).start(timeout=15)

    def config_lines(self, known: Sequence[str] = ()) -> list[str]:
        return ["redis_server=127.0.0.1", f"redis_port={self.server.port}"]

    def where(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.port

    def master_client(self) -> Any:
        return self.server.client(socket_timeout=5)

    def replica_clients(self) -> list[Any]:
        """None: a single server has no replica."""
        return []

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.start(timeout=15)

    def pause(self) -> None:
        self.server.pause()

    def resume(self) -> None:
        self.server.resume()

    # A long outage is a kill, and its end a restart.
    outage, outage_end = kill, restart


class SentinelSet(kit_sentinel.SentinelSet):
    """A master, a replica and three Sentinels (see the module docstring), with the soak's faults."""

    sentinel = True

    def __init__(self, resources: Resources, workdir: Path) -> None:
        super().__init__(workdir, master_name=MASTER_NAME, failover_timeout_ms=5000, loglevel="warning")
        for server in self.servers:
            server.extra_args = [*NODE_ARGS, *server.extra_args]
        for server in self.servers + self.sentinels:
            resources.server(server)
        self.start()

    def config_lines(self, known: Sequence[str] = ()) -> list[str]:
        """
        Where the Sentinels are; and, for an observer that knows it, a wait
        for the replica after each round (C{redis_wait_replicas}), as an
        operator who wants few duplicates after a failover sets it (under
        the soak's load the replica lagged 300 to 2,000 record writes
        behind at a master kill without it).
        """
        listed = ";".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        waits = ["redis_wait_replicas=1", "redis_wait_timeout=1"] if "redis_wait_replicas" in known else []
        return [f"redis_sentinels={listed}", f"redis_sentinel_master={MASTER_NAME}", *waits]

    # -- where the master is ---------------------------------------------------------

    def where(self) -> tuple[str, int]:
        """The master a Sentinel names now."""
        for index in range(len(self.sentinels)):
            answer = self.master_address(index)
            if answer is not None:
                return answer
        raise ConnectionError("no Sentinel answers")

    def _agreed(self) -> tuple[str, int] | None:
        answers = {self.master_address(index) for index in range(len(self.sentinels))}
        return answers.pop() if len(answers) == 1 and None not in answers else None

    def _master(self) -> RedisServer:
        port = self.where()[1]
        return next(node for node in self.servers if node.port == port)

    def master_client(self) -> Any:
        return self._master().client(socket_timeout=5)

    def replica_clients(self) -> list[Any]:
        """Clients of the nodes that run and are not the master now."""
        master = self._master()
        return [node.client(socket_timeout=5) for node in self.servers
                if node is not master and node.is_running()]

    def _replicas_ok(self) -> bool:
        """
        Every node runs, the one the Sentinels name is a master, and its
        replica is online (a failover needs a replica in sync).
        """
        try:
            client = self._master().client(socket_timeout=1)
            try:
                info = client.info("replication")
            finally:
                client.close()
        except Exception:
            return False
        online = str(info.get("slave0", "")).find("online") >= 0 or \
            (isinstance(info.get("slave0"), dict) and info["slave0"].get("state") == "online")
        return (info.get("role") == "master" and online
                and all(node.is_running() for node in self.servers))

    @staticmethod
    def _wait(predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)

    # -- faults ------------------------------------------------------------------------------

    def _whole_before(self, what: str) -> None:
        """
        Wait until the set is whole (L{_agreed_and_sound}) before C{what}.

        A fault that makes the Sentinels fail over is a failover only if a
        replica has the master's data: a master killed (or stopped) while
        its only replica is still in its first synchronisation hands the
        role to a node with none of it, and Redis loses everything it had
        acknowledged at once.  That is the single server's kill (restarted
        empty), not what a failover loses (the writes the replica had not
        yet received); run 5 of docs/soak.md met it after a stopped master
        came back and resynchronised while the next fault killed its
        successor.
        """
        self._wait(self._agreed_and_sound, 30, f"the set to be whole before {what}")

    def kill(self) -> None:
        """SIGKILL the master, once the set is whole, and wait until the Sentinels name another."""
        self._whole_before("a kill")
        master = self._master()
        master.kill()
        self._killed = master
        self._wait(lambda: self.where()[1] != master.port, 30, "a replica to take over")

    def restart(self) -> None:
        """The killed node comes back, empty, as a replica of the new master."""
        host, port = self.where()
        self._killed.extra_args = [*NODE_ARGS, "--replicaof", host, str(port)]
        self._killed.start(timeout=15)
        self._wait(self._agreed_and_sound, 30, "the set to be whole again")
        self._writable_after("the kill")

    def _takes_writes(self) -> bool:
        """
        The master the Sentinels name accepts a write now (with
        C{min-replicas-to-write}, not before its replica is in sync).
        """
        try:
            client = self._master().client(socket_timeout=1)
            try:
                client.set("soak:writable", "1", px=60_000)
            finally:
                client.close()
        except Exception:
            return False
        return True

    def _writable_after(self, what: str) -> None:
        """
        The end of a fault is when the master takes writes again: until
        then the observer holds events (or leaves them, past
        C{max_held_events}, to a listing), and files deleted meanwhile are
        never announced, as in any outage; the fault's window
        (L{soak.ledger.Ledger.window}) has to cover that time.
        """
        self._wait(self._agreed_and_sound, 60, f"the set to be whole after {what}")
        self._wait(self._takes_writes, 90, f"the master to take writes after {what}")

    def _agreed_and_sound(self) -> bool:
        return self._agreed() is not None and self._replicas_ok()

    def pause(self) -> None:
        # Stopped past down-after-milliseconds, the master is failed over.
        self._whole_before("a stop")
        self._paused = self._master()
        self._paused.pause()

    def resume(self) -> None:
        # A master stopped past down-after-milliseconds was replaced; it
        # rejoins as a replica (the Sentinels reconfigure it).
        self._paused.resume()
        self._writable_after("the stop")

    def outage(self) -> None:
        """Every node stopped: no master anywhere, no failover possible (until they resume)."""
        self._whole_before("an outage")
        for node in self.servers:
            node.pause()

    def outage_end(self) -> None:
        for node in self.servers:
            node.resume()
        self._writable_after("the outage")

    def failover(self, before_failover: Callable[[], None] | None = None) -> str:
        """
        C{SENTINEL FAILOVER}, once the set is whole; wait for the new master.
        A Sentinel may decline (a failover of the same master shortly
        before): that is said, and is no failure of the soak.

        @param before_failover: called once the set is whole, just before.
        """
        import valkey

        self._whole_before("a failover")
        before = self.where()
        if before_failover is not None:
            before_failover()
        for sentinel in self.sentinels:
            client = sentinel.client(socket_timeout=5)
            try:
                client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            except valkey.exceptions.ResponseError as e:
                last = str(e)
                continue
            finally:
                client.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.where() != before:
                    # The demoted master resyncs meanwhile; the new one
                    # takes writes once it has (min-replicas-to-write).
                    after = self.where()[1]
                    self._writable_after("the failover")
                    return f"master {before[1]} -> {after}"
                time.sleep(0.1)
            last = "no new master within 10 s"
        return f"no failover ({last})"
