"""
``python -m bench.wait_replicas``: what C{WAIT 1 timeout} after every round
would cost (the measurement behind docs/design.md's "no redis_wait_replicas").

A master and one replica (the wheel's valkey-server, loopback); rounds shaped
like the writer's (C{MULTI / LPUSH / INCRBY / EXEC}, pipelined in one write,
one round in flight), with and without C{WAIT 1 1000} pipelined after the
C{EXEC}, for batches of 1, 100 and 10,000 events.  Prints the round time
(p50, p99) and the event rate.  Not a test: figures move with the machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import valkey

from tests.kit import RedisServer

EVENT = (b'{"directory": "/srv/in", "filename": "f000001.csv", "event": "created", '
         b'"event_timestamp": 1795502069.028}')


def rounds(client: valkey.Valkey, count: int, batch: int, wait: bool) -> tuple[float, float, float]:
    """p50 and p99 of the round time (ms), and events per second."""
    times = []
    started = time.perf_counter()
    for _ in range(count):
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("MULTI")
        pipe.lpush("q", *([EVENT] * batch))
        pipe.incrby("c", batch)
        pipe.execute_command("EXEC")
        if wait:
            pipe.execute_command("WAIT", 1, 1000)
        before = time.perf_counter()
        pipe.execute()
        times.append(time.perf_counter() - before)
    rate = count * batch / (time.perf_counter() - started)
    client.delete("q")
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3, rate


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        master = RedisServer(workdir=Path(scratch) / "master", loglevel="warning").start()
        replica = RedisServer(workdir=Path(scratch) / "replica", loglevel="warning",
                              extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
        try:
            client, replica_client = master.client(socket_timeout=30), replica.client(socket_timeout=30)
            while replica_client.info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
            for batch, count in ((1, 3000), (100, 1000), (10_000, 40)):
                for wait in (False, True):
                    p50, p99, rate = rounds(client, count, batch, wait)
                    print(f"batch {batch:6,d}  {'WAIT 1' if wait else 'no WAIT'}:  round p50 {p50:7.3f} ms"
                          f"  p99 {p99:7.3f} ms  {rate:11,.0f} events/s")
        finally:
            replica.kill()
            master.kill()


if __name__ == "__main__":
    main()
