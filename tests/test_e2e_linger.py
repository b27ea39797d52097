"""
End to end: C{linger} is accepted, and with it (or with C{0}) every event of a
steady stream arrives, in order, counted, and the ones held at a SIGTERM are
delivered before the daemon exits.

The bound itself is proved with a C{Clock} in tests/test_linger.py; the
benchmark measures what it saves (make bench: the paced rows).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.kit import drain, section, write_config
from tests.test_e2e_basic import start, touch, wait_listed

pytestmark = pytest.mark.process


@pytest.mark.parametrize("linger", ["0", "0.01", None])
def test_a_steady_stream_arrives_whole_and_in_order_whatever_the_linger(
    linger, tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    for i in range(50):  # listed at start-up, while the stream comes
        touch(watched / f"old{i:03d}.dat")
    common = {} if linger is None else {"linger": linger}
    observer = start(observer_factory, tmp_path, redis_server.port,
                     {"in": section(watched, counter="cnt")}, **common)
    assert "'linger'" not in observer.output(), "the key must be accepted without a word"
    wait_listed(observer, watched)
    listed = drain(redis_client, "q", 50, timeout=5)
    assert {e["event"] for e in listed} == {"exists"}

    # About 1,000 files a second: the rate where gathering matters.
    names = [f"f{i:04d}.dat" for i in range(300)]
    for i, name in enumerate(names):
        touch(watched / name)
        if i % 10 == 9:
            time.sleep(0.01)
    events = drain(redis_client, "q", len(names), timeout=10)
    assert [e["filename"] for e in events] == names
    assert {e["event"] for e in events} == {"created"}
    assert int(redis_client.get("cnt")) == 350

    # The last file is held at most the linger; a stop right after it still
    # delivers it (the reply of its round is taken before the exit).
    touch(watched / "last.dat")
    observer.terminate()
    assert observer.wait() == 0
    assert redis_client.llen("q") == 1
    assert int(redis_client.get("cnt")) == 351


def test_a_reload_changes_the_linger_and_events_keep_arriving(
    tmp_path, redis_server, redis_client, observer_factory
):
    watched = tmp_path / "in"
    watched.mkdir()
    common = {"redis_server": "127.0.0.1", "redis_port": redis_server.port}
    path = write_config(tmp_path, {"in": section(watched)}, {**common, "linger": "0.01"})
    observer = observer_factory(path).start()
    wait_listed(observer, watched)
    write_config(tmp_path, {"in": section(watched)}, {**common, "linger": "0"})
    mark = observer.mark()
    observer.signal(signal.SIGHUP)
    line = observer.wait_for_line("Configuration reloaded", timeout=10, since=mark)
    assert "linger 0 s" in line, line
    for i in range(20):
        touch(watched / f"after{i:02d}.dat")
    events = drain(redis_client, "q", 20, timeout=10)
    assert [e["filename"] for e in events] == [f"after{i:02d}.dat" for i in range(20)]
