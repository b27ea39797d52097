"""
A latency consumer as its own process: ``python -m bench.consumer PORT QUEUE OUT``.

It BRPOPs QUEUE (then RPOPs what else is there) and notes the time each event
was received.  Being alone in its process, its receive times do not depend on
what the main benchmark process is busy with (draining a million events of
another list, say).  It prints ``ready`` once connected; on SIGUSR1 it takes
what is left in the list and writes C{OUT}: a JSON list of
C{[filename, received_at, event_timestamp]}.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import cast

_stop = False


def _on_stop(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def main(argv: list[str]) -> int:
    import valkey

    port, queue, out = int(argv[0]), argv[1], argv[2]
    signal.signal(signal.SIGUSR1, _on_stop)
    client = valkey.Valkey(host="127.0.0.1", port=port, socket_timeout=60)
    client.ping()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    got: list[tuple[bytes, float]] = []
    while True:
        stopping = _stop
        # A synchronous client: its replies are values (the stubs also
        # allow awaitables), and Redis takes a timeout in seconds as a float.
        item = cast("list[bytes] | None", client.brpop([queue], timeout=0.05))  # type: ignore[arg-type]
        if item:
            got.append((item[1], time.time()))
        more = cast("list[bytes] | None", client.rpop(queue, 1000))
        if more:
            at = time.time()
            got.extend((raw, at) for raw in more)
        if stopping and not item and not more:
            break
    records = []
    for raw, at in got:
        event = json.loads(raw)
        records.append([event["filename"], at, float(event["event_timestamp"])])
    with open(out, "w") as f:
        json.dump(records, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
