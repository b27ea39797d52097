"""
Fault-injection end-to-end tests: the real daemon (``twistd -n dirobserver``)
against a real valkey-server, with things going wrong in between.

The promise under test: every file that is present in a monitored directory
and passes the filters is announced at least once, whatever happened in
between.  Duplicates are allowed; silence is not.  So every test compares the
SET of file names received (``created`` or ``exists`` events) with the set of
files present, while a consumer thread drains the Redis lists in bulk the way
a real consumer would (so the lists never grow without bound).

The monitored directories live on tmpfs (/dev/shm) when it exists: creating
tens of thousands of files there takes a fraction of a second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import valkey.exceptions

from tests.kit import (
    Observer,
    RedisServer,
    command_calls,
    drop_root_file_access,
    free_port,
    section,
    wait_until,
    write_config,
)

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

# -- glue ------------------------------------------------------------------------


class Consumer:
    """
    Drains Redis lists in a background thread, in bulk (``RPOP key count``),
    oldest event first, and keeps every event it got.

    Redis being down, restarted or answering errors (a WRONGTYPE key, OOM) is
    expected in these tests: the consumer just tries again a moment later.
    """

    BULK = 5000

    def __init__(
        self,
        server: RedisServer,
        queues: Sequence[str],
        interval: float = 0.01,
        on_events: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.server = server
        self.on_events = on_events
        self.queues = list(queues)
        self.interval = interval
        self.client = server.client(socket_timeout=2, socket_connect_timeout=1)
        self.events: dict[str, list[dict[str, Any]]] = {q: [] for q in self.queues}
        self._names: dict[str, set[str]] = {q: set() for q in self.queues}
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer", daemon=True)

    def start(self) -> Consumer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self.client.close()
        except Exception:
            pass

    def _pop(self, queue: str) -> int:
        raw = self.client.rpop(queue, self.BULK)
        if not raw:
            return 0
        parsed = [json.loads(item) for item in raw]
        with self._lock:
            self.events[queue].extend(parsed)
            self._names[queue].update(e["filename"] for e in parsed)
        if self.on_events is not None:
            self.on_events(parsed)
        return len(parsed)

    def _run(self) -> None:
        while not self._stop.is_set():
            got = 0
            for queue in self.queues:
                try:
                    got += self._pop(queue)
                except valkey.exceptions.ValkeyError:
                    # Down, restarting, WRONGTYPE, ...: try again shortly.
                    self.errors += 1
                    time.sleep(0.05)
            if not got:
                time.sleep(self.interval)

    # -- what the tests look at --------------------------------------------------

    def names(self, queue: str | None = None) -> set[str]:
        """Every file name received (any event) on C{queue} (default: the first)."""
        with self._lock:
            return set(self._names[queue or self.queues[0]])

    def all_events(self, queue: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events[queue or self.queues[0]])

    def count(self, queue: str | None = None) -> int:
        with self._lock:
            return len(self.events[queue or self.queues[0]])

    def missing(self, expected: Iterable[str], queue: str | None = None) -> set[str]:
        with self._lock:
            got = self._names[queue or self.queues[0]]
            return {n for n in expected if n not in got}

    def wait_for(self, expected: Iterable[str], timeout: float, queue: str | None = None) -> set[str]:
        """Wait until every name of C{expected} was received; return the missing ones."""
        expected = set(expected)
        wait_until(lambda: not self.missing(expected, queue), timeout, interval=0.05)
        return self.missing(expected, queue)


def make_files(directory: Path, names: Iterable[str], pause: float = 0.0) -> list[str]:
    """Create empty files as fast as possible (or C{pause} seconds apart)."""
    made = []
    base = str(directory)
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for name in names:
        os.close(os.open(os.path.join(base, name), flags, 0o644))
        made.append(name)
        if pause:
            time.sleep(pause)  # files spread out in time, as a real producer makes them
    return made


def held_events(metrics_port: int) -> float | None:
    """C{dirobserver_held_events} from the daemon's /metrics (None while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("dirobserver_held_events "):
            return float(line.split()[1])
    return None


def present(directory: Path) -> set[str]:
    """The regular files in C{directory} now."""
    return {e.name for e in os.scandir(directory) if e.is_file(follow_symlinks=False)}


def vm_rss_kib(pid: int) -> int:
    """Resident set size of C{pid} in KiB (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def lines_with(observer: Observer, text: str) -> list[str]:
    return [line for line in observer.output().splitlines() if text in line]


def describe_missing(missing: set[str], limit: int = 10) -> str:
    """How many are missing, and which, as runs of consecutive names."""
    runs: list[list[str]] = []
    for name in sorted(missing):
        match = re.fullmatch(r"(.*?)(\d+)", name)
        if runs and match:
            last = re.fullmatch(r"(.*?)(\d+)", runs[-1][-1])
            if last and last.group(1) == match.group(1) and int(last.group(2)) + 1 == int(match.group(2)):
                runs[-1].append(name)
                continue
        runs.append([name])
    shown = [r[0] if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs[:limit]]
    more = f" and {len(runs) - limit} more runs" if len(runs) > limit else ""
    return f"{len(missing)} missing: {', '.join(shown)}{more}"


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A private directory on tmpfs (/dev/shm) when there is one, removed at the end."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    if base is None:
        path = tmp_path / "fast"
        path.mkdir()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="dirobserver-e2e-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def consumers() -> Iterator[Callable[..., Consumer]]:
    """Make started L{Consumer}s; all are stopped at teardown."""
    made: list[Consumer] = []

    def factory(server: RedisServer, *queues: str, on_events: Any = None) -> Consumer:
        consumer = Consumer(server, queues or ("q",), on_events=on_events).start()
        made.append(consumer)
        return consumer

    try:
        yield factory
    finally:
        for consumer in made:
            consumer.stop()


def common(port: int, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"redis_server": "127.0.0.1", "redis_port": port, "timeout": 5}
    values.update(extra)
    return values


# -- 1. kernel queue overflow ----------------------------------------------------------


def test_kernel_queue_overflow_every_file_announced(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    The observer is SIGSTOPped while far more files than the kernel inotify
    queue holds are created: the queue overflows and events are lost in the
    kernel; after SIGCONT the observer must notice (IN_Q_OVERFLOW) and list
    the directory, so that every file is announced.
    """
    max_queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    total = max_queued + 20_000
    config = write_config(
        tmp_path,
        {"s": section(fast_dir, poll_queue_limit=0)},
        common(redis_server.port, max_held_events=10 * total),
    )
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    observer.signal(signal.SIGSTOP)
    try:
        names = make_files(fast_dir, (f"f{i:06d}" for i in range(total)))
    finally:
        observer.signal(signal.SIGCONT)

    missing = consumer.wait_for(names, timeout=60)
    assert not missing, f"after a kernel queue overflow: {describe_missing(missing)}"
    assert lines_with(observer, "overflowed"), "no overflow warning in the output"
    assert observer.is_running()


# -- 2. Redis SIGKILLed and restarted ----------------------------------------------------


def test_redis_killed_and_restarted_nothing_lost_order_kept(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    Redis is SIGKILLed (it keeps nothing on disk), 500 files are created one
    by one while it is down, and it is restarted, empty, on the same port:
    nothing is missing, and the ``created`` events of the files created
    during the outage come in creation order.
    """
    config = write_config(tmp_path, {"s": section(fast_dir)}, common(redis_server.port))
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    before = make_files(fast_dir, (f"before-{i:04d}" for i in range(100)))
    assert not consumer.wait_for(before, timeout=10)

    mark = observer.mark()
    redis_server.kill()
    during = make_files(fast_dir, (f"during-{i:04d}" for i in range(500)), pause=0.001)
    observer.wait_for_line("Lost the connection", timeout=10, since=mark)
    # An attempt to reconnect failed: the outage is real for the observer.
    observer.wait_for_line("retrying until it answers", timeout=10, since=mark)
    redis_server.restart()

    everything = set(before) | set(during)
    missing = consumer.wait_for(everything, timeout=20)
    assert not missing, f"after a Redis restart: {describe_missing(missing)}"
    assert everything == present(fast_dir)

    # First occurrence of each name among "created" events, in arrival order.
    first_seen: dict[str, int] = {}
    for event in consumer.all_events():
        if event["event"] == "created" and event["filename"].startswith("during-"):
            first_seen.setdefault(event["filename"], len(first_seen))
    order = sorted(first_seen, key=first_seen.__getitem__)
    assert set(order) == set(during), (
        "some files created while Redis was down got no 'created' event: "
        + describe_missing(set(during) - set(order))
    )
    assert order == during, "the 'created' events of the outage are out of creation order"
    assert observer.is_running()


# -- 3. Redis down at start-up -------------------------------------------------------------


def test_redis_down_at_startup(
    tmp_path, fast_dir, redis_server_factory, observer_factory, consumers
) -> None:
    """
    No Redis answers when the observer starts: it must stay up, watch, hold
    events, and deliver everything once Redis appears; then say it is ready.
    """
    port = free_port()
    present_at_start = make_files(fast_dir, (f"old-{i:03d}" for i in range(50)))
    config = write_config(tmp_path, {"s": section(fast_dir)}, common(port))
    metrics = free_port()
    observer = observer_factory(
        config, extra_args=[f"--metrics=tcp:{metrics}:interface=127.0.0.1"]
    ).start(wait_ready=False)
    observer.wait_for_line("Watching", timeout=15)

    created = make_files(fast_dir, (f"new-{i:03d}" for i in range(300)), pause=0.002)
    # The observer saw them all while Redis was down: it holds their events.
    assert wait_until(lambda: (held_events(metrics) or 0) >= len(created), 15), (
        f"{held_events(metrics)} events held, {len(created)} files created:\n"
        + observer.output()
    )
    assert observer.is_running(), "the observer exited while Redis was down:\n" + observer.output()
    assert not lines_with(observer, Observer.READY_MARK), "ready before Redis answered"

    server = redis_server_factory(port=port)  # started, answers PING
    consumer = consumers(server, "q")
    everything = set(present_at_start) | set(created)
    missing = consumer.wait_for(everything, timeout=20)
    assert not missing, f"Redis down at start-up: {describe_missing(missing)}"
    observer.wait_for_line(Observer.READY_MARK, timeout=10)
    assert observer.is_running()


# -- 4. the observer SIGKILLed mid-burst ----------------------------------------------------


def test_observer_killed_mid_burst_then_restarted(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    The observer is SIGKILLed while thousands of files arrive, then started
    again with the same configuration: every file present at the end is
    announced (by one run or the other).
    """
    total = 20_000
    config = write_config(tmp_path, {"s": section(fast_dir, poll_queue_limit=0)}, common(redis_server.port))
    first = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    half = threading.Event()
    failure: list[BaseException] = []
    progress = [0]

    def burst() -> None:
        try:
            base = str(fast_dir)
            flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
            for i in range(total):
                os.close(os.open(os.path.join(base, f"b{i:06d}"), flags, 0o644))
                progress[0] = i + 1
                if i == total // 2:
                    half.set()
                if i % 100 == 0:
                    time.sleep(0.001)  # a burst that lasts long enough to cut
        except BaseException as e:  # pragma: no cover - reported below
            failure.append(e)
            half.set()

    creator = threading.Thread(target=burst, name="burst")
    creator.start()
    assert half.wait(30)
    first.kill()
    created_at_kill = progress[0]
    creator.join(60)
    assert not failure, failure
    assert first.returncode == -signal.SIGKILL
    # The harness worked: the kill fell inside the burst, and the first run
    # had delivered some of it.
    assert created_at_kill < total, "the burst ended before the kill"
    assert consumer.count() > 0

    second = observer_factory(config).start()
    names = present(fast_dir)
    assert len(names) == total
    missing = consumer.wait_for(names, timeout=30)
    assert not missing, f"after a SIGKILL and a restart: {describe_missing(missing)}"
    assert second.is_running()


# -- 5. a monitored directory deleted and recreated ----------------------------------------


def test_directory_deleted_and_recreated_while_another_is_busy(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    Directory B is deleted and recreated 10 times, with files created in it
    between deletions, while files arrive steadily in directory A: A loses
    nothing, the files in B after its last recreation are all announced, and
    the observer keeps running.
    """
    dir_a, dir_b = fast_dir / "a", fast_dir / "b"
    dir_a.mkdir()
    dir_b.mkdir()
    config = write_config(
        tmp_path,
        {"a": section(dir_a, "qa"), "b": section(dir_b, "qb")},
        common(redis_server.port),
    )
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "qa", "qb")

    stop = threading.Event()
    made_a: list[str] = []

    def steady() -> None:
        i = 0
        flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
        while not stop.is_set():
            name = f"a{i:06d}"
            os.close(os.open(os.path.join(dir_a, name), flags, 0o644))
            made_a.append(name)
            i += 1
            time.sleep(0.002)  # a steady stream, not a burst

    stream = threading.Thread(target=steady, name="steady")
    stream.start()
    try:
        for cycle in range(10):
            made_b = make_files(dir_b, (f"b{cycle:02d}-{i:03d}" for i in range(50)))
            if cycle % 3 == 0:
                # Now and then the files are announced before the deletion.
                announced = consumer.wait_for(made_b, timeout=10, queue="qb")
                assert not announced, f"cycle {cycle}: {describe_missing(announced)}"
            mark = observer.mark()
            shutil.rmtree(dir_b)
            if cycle % 2 == 0:
                # Let the observer see the deletion and watch the new one.
                dir_b.mkdir()
                observer.wait_for_line("Directory is back", timeout=10, since=mark)
            else:
                # Recreated at once: the observer may even miss the gap.
                dir_b.mkdir()
        final_b = make_files(dir_b, (f"final-{i:03d}" for i in range(200)))
        # The busy directory goes on while the last recreation is announced.
        missing_final = consumer.wait_for(final_b, timeout=20, queue="qb")
        assert not missing_final, f"the recreated directory: {describe_missing(missing_final)}"
    finally:
        stop.set()
        stream.join(10)

    missing_a = consumer.wait_for(made_a, timeout=20, queue="qa")
    assert not missing_a, f"the busy directory lost files: {describe_missing(missing_a)}"
    names_b = present(dir_b)
    assert names_b == set(final_b)
    missing_b = consumer.wait_for(names_b, timeout=20, queue="qb")
    assert not missing_b, f"the recreated directory: {describe_missing(missing_b)}"
    assert observer.is_running(), observer.output()
    assert lines_with(observer, "was deleted")


# -- 6. the held-events bound during a long outage --------------------------------------------


def test_held_events_bounded_during_long_outage(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    With max_held_events=1000 and Redis down, 50,000 files arrive: the
    observer holds at most 1000 events (its memory stays bounded) and says it
    holds no more; once Redis is back every file present is announced, by
    the catch-up listing.
    """
    max_held = 1000
    total = 50_000
    config = write_config(
        tmp_path,
        {"s": section(fast_dir, poll_queue_limit=0)},
        common(redis_server.port, max_held_events=max_held),
    )
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")
    observer.wait_for_line(f"Listed {fast_dir}:", timeout=10)  # the start-up work is done
    rss_before = vm_rss_kib(observer.pid)

    mark = observer.mark()
    redis_server.kill()
    observer.wait_for_line("Lost the connection", timeout=10, since=mark)
    peak = rss_before
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    base = str(fast_dir)
    for i in range(total):
        os.close(os.open(os.path.join(base, f"h{i:06d}"), flags, 0o644))
        if i % 5000 == 0:
            peak = max(peak, vm_rss_kib(observer.pid))
    observer.wait_for_line("not holding more", timeout=10, since=mark)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        peak = max(peak, vm_rss_kib(observer.pid))
        time.sleep(0.1)  # sampling the RSS over two seconds: the interval of the samples
    growth_mib = (peak - rss_before) / 1024
    assert growth_mib < 50, f"RSS grew by {growth_mib:.1f} MiB while Redis was down"

    mark = observer.mark()
    redis_server.restart()
    back = observer.wait_for_line("answers again", timeout=15, since=mark)
    held = int(re.search(r"\((\d+) events held\)", back).group(1))
    assert held <= max_held, back

    names = present(fast_dir)
    assert len(names) == total
    print(f"RSS before {rss_before} KiB, peak {peak} KiB; {back}")
    missing = consumer.wait_for(names, timeout=30)
    assert not missing, (
        f"after an outage past max_held_events: {describe_missing(missing)}; "
        f"{consumer.count()} events received, "
        f"{len(lines_with(observer, 'Redis caught up'))} catch-up listings, "
        f"{len(lines_with(observer, 'not holding more'))} 'not holding more' lines"
    )
    assert observer.is_running()


def test_listing_larger_than_max_held_events_with_redis_healthy(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    The smallest form of the previous test, with no outage at all: 1500 files
    present at start, max_held_events=1000, Redis up the whole time.  The
    start-up listing overruns the bound; the files it could not hold must be
    announced by the listing that follows.
    """
    names = make_files(fast_dir, (f"s{i:05d}" for i in range(1500)))
    config = write_config(
        tmp_path,
        {"s": section(fast_dir, poll_queue_limit=0)},
        common(redis_server.port, max_held_events=1000),
    )
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")
    missing = consumer.wait_for(names, timeout=10)
    assert not missing, (
        f"listing past max_held_events, Redis healthy: {describe_missing(missing)}; "
        f"{consumer.count()} events received, "
        f"{len(lines_with(observer, 'Redis caught up'))} catch-up listings"
    )
    assert observer.is_running()


def test_several_listings_at_once_past_max_held_events(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    Several directories listed at the same time (start-up) share one
    max_held_events=1000: each listing alone respects the bound, together
    they must not lose files for good either.
    """
    sections, expected = {}, {}
    for n in range(6):
        directory = fast_dir / f"d{n}"
        directory.mkdir()
        expected[f"q{n}"] = make_files(directory, (f"d{n}-{i:05d}" for i in range(3000)))
        sections[f"s{n}"] = section(directory, f"q{n}", poll_queue_limit=0)
    config = write_config(tmp_path, sections, common(redis_server.port, max_held_events=1000))
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, *expected)
    wait_until(lambda: not any(consumer.missing(n, q) for q, n in expected.items()), 15, 0.1)
    problems = []
    for queue, names in expected.items():
        missing = consumer.missing(names, queue)
        if missing:
            problems.append(f"{queue}: {describe_missing(missing, 5)}")
    assert not problems, (
        "; ".join(problems) + f"; {len(lines_with(observer, 'Redis caught up'))} catch-up listings"
    )
    assert observer.is_running()


# -- 7. Redis answering errors -----------------------------------------------------------------


def test_wrongtype_on_the_queue_key_then_fixed(
    tmp_path, fast_dir, redis_server, redis_client, observer_factory, consumers
) -> None:
    """
    The queue key holds a string, so every LPUSH fails with WRONGTYPE: the
    events are kept, and all arrive once the key is deleted.
    """
    config = write_config(tmp_path, {"s": section(fast_dir)}, common(redis_server.port))
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    mark = observer.mark()
    redis_client.set("q", b"not a list")
    names = make_files(fast_dir, (f"w{i:04d}" for i in range(300)))
    observer.wait_for_line("WRONGTYPE", timeout=10, since=mark)
    # A couple of retries (every second), each a transaction the server ran.
    rounds = command_calls(redis_client, "exec")
    assert wait_until(lambda: command_calls(redis_client, "exec") >= rounds + 2, 10), \
        "the observer did not retry"
    assert redis_client.type("q") == b"string"
    redis_client.delete("q")

    missing = consumer.wait_for(names, timeout=15)
    assert not missing, f"after a WRONGTYPE: {describe_missing(missing)}"
    assert observer.is_running()


@pytest.mark.parametrize("failure", ["oom", "readonly"])
def test_write_errors_then_fixed(
    failure, tmp_path, fast_dir, redis_server, redis_client, observer_factory, consumers
) -> None:
    """
    Redis refuses writes for a while, with OOM (maxmemory 1, noeviction) or
    READONLY (made a replica of a master that does not exist): the events
    are kept, and all arrive once writes are accepted again.
    """
    config = write_config(tmp_path, {"s": section(fast_dir)}, common(redis_server.port))
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    mark = observer.mark()
    if failure == "oom":
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", "1")
        expected_words = ("OOM", "EXECABORT")
    else:
        redis_client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        expected_words = ("READONLY", "EXECABORT")
    try:
        names = make_files(fast_dir, (f"m{i:04d}" for i in range(300)))
        line = observer.wait_for_line("Redis refused events", timeout=10, since=mark)
        assert any(word in line for word in expected_words), line
        # A couple of retries (every second), each a transaction refused.
        rounds = command_calls(redis_client, "exec")
        assert wait_until(lambda: command_calls(redis_client, "exec") >= rounds + 2, 10), \
            "the observer did not retry"
        assert not consumer.names() & set(names), "events got through despite the errors"
    finally:
        if failure == "oom":
            redis_client.config_set("maxmemory", "0")
        else:
            redis_client.execute_command("REPLICAOF", "NO", "ONE")

    missing = consumer.wait_for(names, timeout=15)
    assert not missing, f"after {failure} errors: {describe_missing(missing)}"
    assert observer.is_running()


# -- 8. a listing cut by poll_queue_limit ------------------------------------------------------


def test_listing_cut_by_poll_queue_limit_is_caught_up(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    50 files present at start, poll_queue_limit=20: the first listing
    announces 20; the consumer drains the queue; the catch-up (every 5 s)
    announces the rest, so every file is announced at least once.
    """
    names = make_files(fast_dir, (f"p{i:03d}" for i in range(50)), pause=0.002)
    config = write_config(
        tmp_path,
        {"s": section(fast_dir, poll_queue_limit=20, forced_poll=0)},
        common(redis_server.port),
    )
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    line = observer.wait_for_line("poll_queue_limit", timeout=10)
    assert "20 of 50" in line, line
    # The first listing is over, with 20 files (the catch-up is 5 s away).
    observer.wait_for_line(f"Listed {fast_dir}: 20 files announced", timeout=10)
    assert wait_until(lambda: consumer.count() >= 20, 5)
    first = consumer.names()
    assert len(first) == 20 and consumer.count() == 20, sorted(first)

    missing = consumer.wait_for(names, timeout=15)
    assert not missing, (
        f"a listing cut by poll_queue_limit was never completed: {describe_missing(missing)}; "
        f"{consumer.count()} events received for {len(consumer.names())} distinct files"
    )
    assert observer.is_running()


def test_listing_cut_by_poll_queue_limit_consumer_removes_files(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    The same cut listing, with the consumer the README describes: it removes
    each file it was told about.  Every file is announced at least once.
    """
    names = make_files(fast_dir, (f"p{i:03d}" for i in range(50)), pause=0.002)
    config = write_config(
        tmp_path,
        {"s": section(fast_dir, poll_queue_limit=20, forced_poll=0)},
        common(redis_server.port),
    )

    def process(events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                os.unlink(os.path.join(event["directory"], event["filename"]))
            except FileNotFoundError:
                pass  # a duplicate

    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q", on_events=process)
    # Three catch-ups at least (every 5 s, 20 files each): room for a loaded machine.
    missing = consumer.wait_for(names, timeout=45)
    assert not missing, f"cut listing, files removed by the consumer: {describe_missing(missing)}"
    assert observer.is_running()


# -- 9. permissions and symbolic links ---------------------------------------------------------


def test_permission_denied_directory(tmp_path, fast_dir, redis_server, observer_factory, consumers) -> None:
    """
    An unreadable directory is reported, and watched once it is readable.
    (As root, the observer runs without the capabilities that bypass
    directory permissions, so the denial is real.)
    """
    locked = fast_dir / "locked"
    locked.mkdir()
    make_files(locked, ["early"])
    locked.chmod(0)
    try:
        config = write_config(
            tmp_path,
            {"s": section(locked), "open": section(fast_dir / "open", queue="q2")},
            common(redis_server.port),
        )
        (fast_dir / "open").mkdir()
        preexec = drop_root_file_access if os.geteuid() == 0 else None
        observer = observer_factory(config, preexec_fn=preexec).start()
        consumer = consumers(redis_server, "q")
        observer.wait_for_line("permission denied", timeout=10)
        # The other directory works meanwhile.
        others = consumers(redis_server, "q2")
        opened = make_files(fast_dir / "open", ["while-locked"])
        assert not others.wait_for(opened, timeout=10)
        mark = observer.mark()
        locked.chmod(0o755)
        # Never watched before: it is not "back".
        observer.wait_for_line(f"[s] Now watching {locked}", timeout=10, since=mark)
        names = ["early"] + make_files(locked, [f"late-{i}" for i in range(20)])
        missing = consumer.wait_for(names, timeout=10)
        assert not missing, describe_missing(missing)
    finally:
        locked.chmod(0o755)


def test_listing_refused_by_permissions_is_done_once_readable(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    A listing that is owed (here: Redis restarted empty, so the events it
    had taken are gone) but fails because the directory, still watched, has
    become unreadable is done once the directory can be read again; it is
    not forgotten.  (Found by the soak: an inotify overflow while a
    directory was unreadable lost its files for good.)
    """
    locked = fast_dir / "locked"
    locked.mkdir()
    config = write_config(tmp_path, {"s": section(locked)}, common(redis_server.port, timeout=2))
    preexec = drop_root_file_access if os.geteuid() == 0 else None
    observer = observer_factory(config, preexec_fn=preexec).start()
    observer.wait_for_line("Listed", timeout=10)  # the start-up listing: no duplicates after it
    names = make_files(locked, [f"taken-{i}" for i in range(20)])
    client = redis_server.client()
    assert wait_until(lambda: client.llen("q") == len(names), timeout=10)
    client.close()
    # Writable and searchable, not readable: the watch stays, listings fail.
    locked.chmod(0o300)
    try:
        mark = observer.mark()
        redis_server.kill()
        redis_server.restart()
        observer.wait_for_line("Cannot list", timeout=15, since=mark)
        consumer = consumers(redis_server, "q")
        # A file made after the failed listing is announced (the watch
        # stays): the observer has gone past the failure.
        make_files(locked, ["witness"])
        assert not consumer.wait_for(["witness"], timeout=10), "the watch no longer works"
        assert consumer.names() == {"witness"}, "announced although the directory cannot be listed"
        locked.chmod(0o755)
        missing = consumer.wait_for(names, timeout=15)
        assert not missing, describe_missing(missing)
        # One line for the refusal, not one per attempt.
        assert len(lines_with(observer, "Cannot list")) == 1, observer.output()
        assert lines_with(observer, "can be listed again")
    finally:
        locked.chmod(0o755)


def test_symlink_to_directory_as_configured_path(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    The configured path is a symbolic link to a directory: the observer says
    so and watches the target; files created in the target are announced.
    """
    target = fast_dir / "target"
    target.mkdir()
    link = fast_dir / "link"
    link.symlink_to(target, target_is_directory=True)
    early = make_files(target, (f"early-{i}" for i in range(10)))
    config = write_config(tmp_path, {"s": section(link)}, common(redis_server.port))
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")

    line = observer.wait_for_line("symbolic link", timeout=10)
    assert str(link) in line and str(target) in line, line
    late = make_files(target, (f"late-{i:03d}" for i in range(100)))
    missing = consumer.wait_for(set(early) | set(late), timeout=10)
    assert not missing, f"through a symbolic link: {describe_missing(missing)}"
    created = {e["filename"] for e in consumer.all_events() if e["event"] == "created"}
    assert set(late) <= created, "files created in the target were not announced as created"
    assert observer.is_running()


def test_symlink_switched_to_another_target_is_followed(
    tmp_path, fast_dir, redis_server, observer_factory, consumers
) -> None:
    """
    A "current" symbolic link switched atomically to a new directory: the old
    target still exists, so inotify says nothing; the observer notices the
    new target within a few seconds, watches and lists it.
    """
    old, new = fast_dir / "release-1", fast_dir / "release-2"
    old.mkdir()
    new.mkdir()
    link = fast_dir / "current"
    link.symlink_to(old, target_is_directory=True)
    config = write_config(tmp_path, {"s": section(link)}, common(redis_server.port))
    observer = observer_factory(config).start()
    consumer = consumers(redis_server, "q")
    observer.wait_for_line("symbolic link", timeout=10)

    before = make_files(new, (f"before-{i}" for i in range(5)))
    switch = fast_dir / "current.tmp"
    switch.symlink_to(new, target_is_directory=True)
    os.rename(switch, link)  # atomic switch, as deployments do it
    observer.wait_for_line("now points to", timeout=10)
    after = make_files(new, (f"after-{i}" for i in range(5)))
    missing = consumer.wait_for(set(before) | set(after), timeout=10)
    assert not missing, f"after the link switch: {describe_missing(missing)}"
    assert observer.is_running()
