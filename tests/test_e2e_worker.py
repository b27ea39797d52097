"""
The worker end to end: real valkey-server, real observer and workers
(``twistd dirobserver`` and ``twistd dirobserver-worker`` subprocesses),
real commands.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.kit import free_port, wait_until, write_config
from tests.kit.processes import drop_root_file_access
from tests.kit.worker import files_under, recording_command, runs

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process


def _config(tmp_path: Path, redis_server: Any, **section: Any) -> tuple[Path, Path]:
    incoming = tmp_path / "in"
    incoming.mkdir(exist_ok=True)
    values = {"active": "true", "directory": str(incoming), "queue": "files", **section}
    config = write_config(tmp_path, {"data": values},
                          common={"redis_server": "127.0.0.1", "redis_port": redis_server.port})
    return config, incoming


def _idle(client: Any, queue: str = "files") -> bool:
    """Nothing left in the queue nor in any worker's processing list."""
    keys = [queue, *client.keys(f"{queue}:processing:*")]
    return all(client.llen(key) == 0 for key in keys)


def _event(directory: Path | str, filename: str) -> str:
    """An event as the observer writes it to a list (a "created" one)."""
    return json.dumps({"directory": str(directory), "filename": filename, "event": "created",
                       "event_timestamp": 1.0})


def test_three_workers_run_each_of_300_files_exactly_once(
    tmp_path: Path, redis_server: Any, redis_client: Any, observer_factory: Any, worker_factory: Any
) -> None:
    """With duplicates on purpose (a forced poll every second), every file runs once and ends in done/."""
    config, incoming = _config(tmp_path, redis_server, forced_poll=1)
    done, failed, log = tmp_path / "done", tmp_path / "failed", tmp_path / "runs.log"
    observer_factory(config).start()
    workers = [
        worker_factory(config, "data", ["--jobs=2", f"--done={done}", f"--failed={failed}"],
                       recording_command(log)).start()
        for _ in range(3)
    ]
    names = [f"file-{n:03d}.csv" for n in range(300)]
    for name in names:
        (incoming / name).write_text(name)
    assert wait_until(lambda: len(files_under(done)) == 300, 90), files_under(done)
    # Then every duplicate event (listings of the forced poll) is acknowledged
    # without running anything.
    assert wait_until(lambda: _idle(redis_client), 30)
    assert sorted(runs(log)) == names
    assert files_under(done) == names
    assert files_under(incoming) == [] and not os.listdir(incoming)
    assert files_under(failed) == []
    assert all(w.is_running() for w in workers)
    for worker in workers:
        worker.terminate()
    assert [w.wait() for w in workers] == [0, 0, 0]


def test_a_failing_command_files_into_failed_with_its_stderr_in_the_log(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    config, incoming = _config(tmp_path, redis_server, recursive="true")
    done, failed = tmp_path / "done", tmp_path / "failed"
    observer_factory(config).start()
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={failed}"],
                            ["/bin/sh", "-c", 'echo "cannot read $1" >&2; exit 3', "sh"]).start()
    (incoming / "sub" / "deeper").mkdir(parents=True)
    (incoming / "sub" / "deeper" / "bad.csv").write_text("x")
    line = worker.wait_for_line("bad.csv: exit 3", 20)
    assert "filed as" in line and "stderr: cannot read" in line and line.endswith("bad.csv")
    assert files_under(failed) == ["sub/deeper/bad.csv"]
    assert files_under(done) == []


def test_a_command_that_replaces_its_file_has_its_output_filed(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    """gzip removes a.csv and leaves a.csv.gz in the claim's directory: that is what is filed."""
    config, incoming = _config(tmp_path, redis_server, recursive="true")
    done, failed = tmp_path / "done", tmp_path / "failed"
    observer_factory(config).start()
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={failed}"],
                            ["gzip"]).start()
    (incoming / "sub").mkdir()
    (incoming / "sub" / "a.csv").write_text("x" * 1000)
    line = worker.wait_for_line("a.csv: exit 0", 20)
    assert line.endswith(f"filed as {done}/sub/a.csv.gz")
    assert files_under(done) == ["sub/a.csv.gz"]
    assert os.listdir(incoming / "sub") == []


def test_a_filing_that_fails_while_the_directory_is_away_is_tried_again(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    """
    The file's directory is renamed away while its command runs, so that
    filing fails (ENOENT): the worker says so once, tries again, and files
    it once the directory is back (it used to hold the claim until it
    stopped).
    """
    config, incoming = _config(tmp_path, redis_server, recursive="true")
    done, failed = tmp_path / "done", tmp_path / "failed"
    started, release = tmp_path / "started", tmp_path / "release"
    observer_factory(config).start()
    worker = worker_factory(
        config, "data", [f"--done={done}", f"--failed={failed}"],
        ["/bin/sh", "-c", f'touch {started}; while [ ! -e {release} ]; do sleep 0.05; done', "sh"],
    ).start()
    (incoming / "sub").mkdir()
    (incoming / "sub" / "a.csv").write_text("x")
    assert wait_until(started.exists, 20), worker.output()
    (incoming / "sub").rename(incoming / "away")
    release.touch()
    worker.wait_for_line("but filing it failed", 20)
    (incoming / "away").rename(incoming / "sub")
    line = worker.wait_for_line("a.csv: exit 0 in", 20)
    assert line.endswith(f"filed as {done}/sub/a.csv"), line
    assert files_under(done) == ["sub/a.csv"]
    assert files_under(failed) == []
    assert worker.output().count("but filing it failed") == 1


def test_the_observer_does_not_announce_a_claimed_file_again_in_a_tree(
    tmp_path: Path, redis_server: Any, redis_client: Any, observer_factory: Any,
    worker_factory: Any,
) -> None:
    """Forced polls of a recursive section while the file is claimed: its private directory is skipped."""
    config, incoming = _config(tmp_path, redis_server, recursive="true", forced_poll=1)
    done, log, started = tmp_path / "done", tmp_path / "runs.log", tmp_path / "started"
    release = tmp_path / "release"
    (incoming / "sub").mkdir()
    observer = observer_factory(config).start()
    command = recording_command(log, f'touch "{started}"; '
                                     f'while [ ! -e "{release}" ]; do sleep 0.05; done')
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={tmp_path / 'failed'}"],
                            command).start()
    (incoming / "sub" / "a.csv").write_text("x")
    assert wait_until(started.exists, 20)
    mark = observer.mark()
    for _ in range(2):  # two complete listings of the tree while it is claimed
        observer.wait_for_line("Listed", 10, since=mark)
        mark = observer.mark()
    assert redis_client.llen("files") == 0
    release.touch()
    worker.wait_for_line("a.csv: exit 0", 20)
    assert runs(log) == ["a.csv"] and files_under(done) == ["sub/a.csv"]
    assert wait_until(lambda: _idle(redis_client), 10)


def test_a_name_clash_in_done_gets_a_suffix(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    config, incoming = _config(tmp_path, redis_server)
    done, failed = tmp_path / "done", tmp_path / "failed"
    done.mkdir()
    (done / "report.csv").write_text("older")
    observer_factory(config).start()
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={failed}"],
                            ["true"]).start()
    (incoming / "report.csv").write_text("newer")
    worker.wait_for_line("report.csv: exit 0", 20)
    assert (done / "report.csv").read_text() == "older"
    assert (done / "report.1.csv").read_text() == "newer"


def test_timeout_kills_the_command_process_group_and_files_into_failed(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    config, incoming = _config(tmp_path, redis_server)
    done, failed, pids = tmp_path / "done", tmp_path / "failed", tmp_path / "pids"
    observer_factory(config).start()
    # The shell starts a child in the background: the whole group must go.
    command = ["/bin/sh", "-c", f'sleep 60 & echo $! > "{pids}"; wait', "sh"]
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={failed}",
                                             "--timeout=1"], command).start()
    (incoming / "slow.csv").write_text("x")
    line = worker.wait_for_line("slow.csv: killed by SIGKILL (timeout)", 20)
    assert "filed as" in line
    assert files_under(failed) == ["slow.csv"]
    child = int(pids.read_text())
    assert wait_until(lambda: not _exists(child), 5), f"background child {child} survived"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent, killed too, was reparented).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_sigterm_lets_the_running_command_finish_then_exits_0(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    config, incoming = _config(tmp_path, redis_server)
    done, failed, started = tmp_path / "done", tmp_path / "failed", tmp_path / "started"
    release = tmp_path / "release"
    observer_factory(config).start()
    # Runs until the test creates "release" (no fixed sleep anywhere).
    command = ["/bin/sh", "-c",
               f'touch "{started}"; while [ ! -e "{release}" ]; do sleep 0.05; done', "sh"]
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={failed}"],
                            command).start()
    (incoming / "a.csv").write_text("x")
    assert wait_until(started.exists, 20)
    worker.terminate()
    worker.wait_for_line("Waiting for 1 running commands to finish", 10)
    assert worker.is_running()
    release.touch()
    assert worker.wait(20) == 0
    assert files_under(done) == ["a.csv"]
    assert "a.csv: exit 0" in worker.output()


def test_sigterm_past_timeout_kills_the_command_and_gives_file_and_event_back(
    tmp_path: Path, redis_server: Any, redis_client: Any, observer_factory: Any,
    worker_factory: Any,
) -> None:
    config, incoming = _config(tmp_path, redis_server)
    done, failed, started = tmp_path / "done", tmp_path / "failed", tmp_path / "started"
    observer_factory(config).start()
    command = ["/bin/sh", "-c", f'touch "{started}"; exec sleep 60', "sh"]
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={failed}",
                                             "--timeout=3"], command).start()
    (incoming / "a.csv").write_text("x")
    assert wait_until(started.exists, 20)
    worker.terminate()
    worker.wait_for_line("Waiting for 1 running commands", 10)
    assert worker.wait(20) == 0
    assert "a.csv: killed by SIGKILL (timeout)" in worker.output()
    assert "file and event given back" in worker.output()
    # The file is back under its name, and its event back in the queue.
    assert files_under(incoming) == ["a.csv"]
    assert wait_until(lambda: redis_client.llen("files") >= 1, 5)
    assert files_under(done) == [] and files_under(failed) == []


def _running_until_cut(tmp_path: Path, redis_server: Any, redis_client: Any,
                       worker_factory: Any) -> tuple[Any, Path, str]:
    """
    A worker running a command on C{a.csv} that only its C{--timeout} (2 s)
    ends: stopped, it gives the file and the event back.  The worker, the
    incoming directory and the event.
    """
    config, incoming = _config(tmp_path, redis_server)
    started = tmp_path / "started"
    command = ["/bin/sh", "-c", f'touch "{started}"; exec sleep 60', "sh"]
    worker = worker_factory(config, "data", [f"--done={tmp_path / 'done'}",
                                             f"--failed={tmp_path / 'failed'}", "--timeout=2"],
                            command).start()
    (incoming / "a.csv").write_text("x")
    event = _event(incoming, "a.csv")
    redis_client.lpush("files", event)
    assert wait_until(started.exists, 20)
    return worker, incoming, event


def test_an_event_given_back_while_redis_refuses_writes_is_given_back_once_it_takes_them(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any,
) -> None:
    """
    A stop gives an event back (its command cut by --timeout) while Redis
    refuses writes (NOREPLICAS): it is sent again until it passes, said
    once; the event is back in the queue exactly once.
    """
    worker, incoming, event = _running_until_cut(tmp_path, redis_server, redis_client, worker_factory)
    redis_client.config_set("min-replicas-to-write", 1)
    mark = worker.mark()
    worker.terminate()
    worker.wait_for_line("refused a command for now (NOREPLICAS", 15, since=mark)
    assert redis_client.lrange("files", 0, -1) == []
    redis_client.config_set("min-replicas-to-write", 0)
    assert worker.wait(20) == 0
    assert redis_client.lrange("files", 0, -1) == [event.encode()]
    assert redis_client.keys("files:processing:*") == []
    assert files_under(incoming) == ["a.csv"]
    assert worker.output().count("refused a command for now") == 1
    assert "Traceback" not in worker.output()


def test_an_event_redis_refuses_to_take_back_stays_taken_for_a_take_over(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any,
) -> None:
    """
    A stop gives an event back while its queue's key holds a string
    (WRONGTYPE): one line says so, and the event stays in the worker's
    processing list, where another worker takes it over; it is not lost.
    """
    worker, incoming, event = _running_until_cut(tmp_path, redis_server, redis_client, worker_factory)
    redis_client.set("files", "not a list")
    worker.terminate()
    assert worker.wait(20) == 0
    assert "Redis refused to give back an event of files (WRONGTYPE" in worker.output()
    [processing] = redis_client.keys("files:processing:*")
    assert redis_client.lrange(processing, 0, -1) == [event.encode()]
    assert files_under(incoming) == ["a.csv"]
    assert "Traceback" not in worker.output()


def test_a_worker_taken_for_dead_that_lives_on_registers_again(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """
    A worker stopped past --reclaim-after is taken for dead: another takes
    its events over and removes it from the registry.  Continued, it must
    be in the registry again, or what it takes after is never taken over
    when it dies.
    """
    config, _ = _config(tmp_path, redis_server)
    options = ["--delete", f"--failed={tmp_path / 'failed'}", "--reclaim-after=2"]
    first = worker_factory(config, "data", options, ["true"]).start()
    [first_id] = redis_client.smembers("files:workers")
    worker_factory(config, "data", options, ["true"]).start()
    assert wait_until(lambda: len(redis_client.smembers("files:workers")) == 2, 10)
    first.signal(signal.SIGSTOP)
    try:
        assert wait_until(lambda: first_id not in redis_client.smembers("files:workers"), 15)
    finally:
        first.signal(signal.SIGCONT)
    assert wait_until(lambda: first_id in redis_client.smembers("files:workers"), 10)


def test_a_refusal_at_the_start_is_one_line_and_the_worker_starts_once_it_ends(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """
    The stream's key holds a string: the consumer group cannot be made
    (WRONGTYPE).  One line, tried again every second; once the key is
    gone the worker is ready and runs what comes.
    """
    config, incoming = _config(tmp_path, redis_server, queue_type="stream")
    redis_client.set("files", "not a stream")
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}"],
                            ["true"]).start(wait_ready=False)
    worker.wait_for_line("Redis refused the worker's registration of files: WRONGTYPE", 15)
    redis_client.delete("files")
    worker.wait_for_line(worker.READY_MARK, 15)
    (incoming / "a.csv").write_text("x")
    redis_client.xadd("files", {"directory": str(incoming), "filename": "a.csv",
                                "event": "created", "event_timestamp": "1.0"})
    worker.wait_for_line("a.csv: exit 0", 15)
    assert worker.output().count("Redis refused the worker's registration") == 1
    assert "Traceback" not in worker.output()


def test_a_demoted_redis_is_one_line_and_the_worker_goes_on_once_it_takes_writes(
    tmp_path: Path, redis_server: Any, redis_client: Any, redis_server_factory: Any,
    worker_factory: Any,
) -> None:
    """
    The worker's Redis made a replica (no Sentinel to ask): its writes are
    refused (READONLY); one line, sent again every second, no traceback at
    each renewal; made a master again, it runs what comes.
    """
    config, incoming = _config(tmp_path, redis_server)
    other = redis_server_factory()
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}",
                                             "--reclaim-after=3"], ["true"]).start()
    mark = worker.mark()
    redis_client.execute_command("REPLICAOF", "127.0.0.1", str(other.port))
    worker.wait_for_line("refused a command for now (READONLY", 15, since=mark)
    redis_client.execute_command("REPLICAOF", "NO", "ONE")
    worker.wait_for_line("accepts the worker's commands again", 15, since=mark)
    (incoming / "a.csv").write_text("x")
    redis_client.lpush("files", _event(incoming, "a.csv"))
    worker.wait_for_line("a.csv: exit 0", 15, since=mark)
    assert worker.output().count("refused a command for now") == 1
    assert "Traceback" not in worker.output()


def test_a_claim_that_fails_is_tried_again_until_it_works(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """
    The worker may not write in the file's directory (its private
    directory cannot be made): one line, tried again every second, and the
    file runs once it can; before, the event was dropped and the file never
    ran.
    """
    config, incoming = _config(tmp_path, redis_server)
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}"],
                            ["true"], preexec_fn=drop_root_file_access).start()
    (incoming / "a.csv").write_text("x")
    incoming.chmod(0o500)
    try:
        redis_client.lpush("files", _event(incoming, "a.csv"))
        worker.wait_for_line("Cannot claim", 15)
    finally:
        incoming.chmod(0o700)
    worker.wait_for_line("a.csv: exit 0", 15)
    assert worker.output().count("Cannot claim") == 1
    assert "claimed after all" in worker.output()
    assert not os.listdir(incoming)


class ReplyCutter:
    """
    A TCP proxy in front of Redis that, once, forwards a command to Redis
    and drops the connection before its reply (the command ran; its
    caller never knows): the first command whose RESP bytes hold C{cut}.
    """

    def __init__(self, port: int, cut: bytes) -> None:
        self.target, self.cut, self.done = port, cut, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            cutting = threading.Event()
            threading.Thread(target=self._pipe, args=(client, server, cutting, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, cutting, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, cutting: threading.Event,
              commands: bool) -> None:
        try:
            while data := source.recv(65536):
                if commands and self.cut in data and not self.done.is_set():
                    self.done.set()
                    cutting.set()  # the reply is swallowed, then both sides closed
                    sink.sendall(data)
                    time.sleep(0.3)
                    break
                if cutting.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_an_event_moved_by_a_take_over_whose_reply_was_lost_is_run(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """
    A dead worker's two events are taken over; the connection is lost after
    Redis moved the first (LMOVE) and before its reply: the command is sent
    again and moves the second.  The first, in this worker's processing
    list though it never heard of it, is found and run too.
    """
    incoming = tmp_path / "in"
    incoming.mkdir()
    proxy = ReplyCutter(redis_server.port, b"$5\r\nLMOVE\r\n")
    try:
        config = write_config(tmp_path, {"data": {"active": "true", "directory": str(incoming),
                                                  "queue": "files"}},
                              common={"redis_server": "127.0.0.1", "redis_port": proxy.port})
        for name in ("a.csv", "b.csv"):
            (incoming / name).write_text("x")
            redis_client.lpush("files:processing:dead-1-aaaaaa", _event(incoming, name))
        redis_client.sadd("files:workers", "dead-1-aaaaaa")
        worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}"],
                                ["true"]).start()
        assert proxy.done.wait(10)
        worker.wait_for_line("a.csv: exit 0", 20)
        worker.wait_for_line("b.csv: exit 0", 20)
        assert wait_until(lambda: redis_client.keys("files:processing:*") == [], 10)
        assert not os.listdir(incoming)
    finally:
        proxy.close()


@dataclasses.dataclass
class KilledMidCommand:
    """
    A worker SIGKILLed while its command ran on C{a.csv} (the command's
    orphan ended too): its event and its claim are left for a successor.
    """

    config: Path
    incoming: Path
    done: Path
    log: Path
    options: list[str]
    command: list[str]

    @classmethod
    def make(cls, tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any,
             queue_type: str) -> KilledMidCommand:
        config, incoming = _config(tmp_path, redis_server, queue_type=queue_type)
        done, failed, log = tmp_path / "done", tmp_path / "failed", tmp_path / "runs.log"
        slow, pid_file = tmp_path / "slow", tmp_path / "pid"
        slow.touch()
        observer_factory(config).start()
        # While "slow" exists, the command hangs (recording its pid first).
        command = recording_command(log, f'if [ -e "{slow}" ]; then echo $$ > "{pid_file}"; '
                                         'exec sleep 60; fi')
        options = [f"--done={done}", f"--failed={failed}", "--reclaim-after=2"]
        first = worker_factory(config, "data", options, command).start()
        (incoming / "a.csv").write_text("x")
        assert wait_until(pid_file.exists, 20)
        first.signal(signal.SIGKILL)
        first.wait()
        # The orphaned command is not the worker's any more: end it here.
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        slow.unlink()
        return cls(config, incoming, done, log, options, command)

    def successor(self, worker_factory: Any) -> Any:
        return worker_factory(self.config, "data", self.options, self.command).start()


@pytest.mark.parametrize("queue_type", ["list", "stream"])
def test_a_worker_killed_mid_command_is_taken_over_after_reclaim_after(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any, queue_type: str
) -> None:
    killed = KilledMidCommand.make(tmp_path, redis_server, observer_factory, worker_factory, queue_type)
    assert files_under(killed.incoming) != []  # still claimed in its private directory
    second = killed.successor(worker_factory)
    line = second.wait_for_line("a.csv: exit 0", 30)
    assert "filed as" in line
    assert "recovered from worker" in second.output()
    assert files_under(killed.done) == ["a.csv"]
    assert runs(killed.log) == ["a.csv", "a.csv"]  # run again: at least once, never lost
    assert not os.listdir(killed.incoming)


@pytest.mark.parametrize("queue_type", ["list", "stream"])
def test_the_empty_claim_directory_of_a_killed_worker_is_removed_by_its_successor(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any, queue_type: str
) -> None:
    """
    A worker killed between making its private directory and renaming the
    file into it leaves the file in place and an empty directory: the
    worker that takes its event over runs the file and removes the
    directory (found by the soak: one was left at the end of a run).
    """
    killed = KilledMidCommand.make(tmp_path, redis_server, observer_factory, worker_factory, queue_type)
    # The state of a kill between mkdir and rename: the file back in place,
    # the dead worker's private directory empty.
    [private] = [p for p in killed.incoming.iterdir() if p.name.endswith(".working")]
    (private / "a.csv").rename(killed.incoming / "a.csv")
    second = killed.successor(worker_factory)
    line = second.wait_for_line("a.csv: exit 0", 30)
    assert "filed as" in line
    # (The rename back was announced too: the file may run from that event
    # first, and the event taken over then finds it gone.)
    assert f"removed {private}, left empty by worker" in second.wait_for_line("left empty by worker", 30)
    assert files_under(killed.done) == ["a.csv"]
    assert not os.listdir(killed.incoming)


def test_a_stream_queue_is_consumed_by_a_consumer_group(
    tmp_path: Path, redis_server: Any, redis_client: Any, observer_factory: Any,
    worker_factory: Any,
) -> None:
    config, incoming = _config(tmp_path, redis_server, queue_type="stream", forced_poll=1)
    done, failed, log = tmp_path / "done", tmp_path / "failed", tmp_path / "runs.log"
    observer_factory(config).start()
    workers = [worker_factory(config, "data", [f"--done={done}", f"--failed={failed}",
                                               "--group=crunchers"],
                              recording_command(log)).start() for _ in range(2)]
    names = [f"s-{n:02d}.csv" for n in range(40)]
    for name in names:
        (incoming / name).write_text(name)
    assert wait_until(lambda: len(files_under(done)) == 40, 60), files_under(done)
    assert wait_until(
        lambda: redis_client.xpending("files", "crunchers")["pending"] == 0, 20)
    assert sorted(runs(log)) == names
    consumers = {c["name"] for c in redis_client.xinfo_consumers("files", "crunchers")}
    assert len(consumers) == 2
    for worker in workers:
        worker.terminate()
    assert [w.wait() for w in workers] == [0, 0]


def test_bad_and_stale_events_are_acknowledged_without_running_anything(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """No observer: the events are pushed by hand, as a broken producer would."""
    config, incoming = _config(tmp_path, redis_server)
    log = tmp_path / "runs.log"
    stale = _event(incoming, "gone.csv")
    outside = _event("/etc", "passwd")
    redis_client.lpush("files", "not json at all", stale, outside)
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}"],
                            recording_command(log)).start()
    worker.wait_for_line("not an event of the observer", 10)
    worker.wait_for_line("'/etc/passwd' is not under the section's directory", 10)
    worker.wait_for_line("gone.csv: gone or claimed by another worker", 10)
    assert wait_until(lambda: _idle(redis_client), 10)
    assert runs(log) == []
    assert "Traceback" not in worker.output()


def test_metrics_count_the_files_by_outcome(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    config, incoming = _config(tmp_path, redis_server)
    port = free_port()
    observer_factory(config).start()
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}",
                                             f"--metrics=tcp:{port}:interface=127.0.0.1"],
                            ["/bin/sh", "-c", 'case "${1##*/}" in bad*) exit 1;; esac', "sh"]).start()
    (incoming / "good.csv").write_text("x")
    (incoming / "bad.csv").write_text("x")
    worker.wait_for_line("good.csv: exit 0", 20)
    worker.wait_for_line("bad.csv: exit 1", 20)
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'dirobserver_worker_files_total{outcome="succeeded",section="data"} 1.0' in page
    assert 'dirobserver_worker_files_total{outcome="failed",section="data"} 1.0' in page
    assert "dirobserver_worker_command_seconds_count 2.0" in page
    ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10).read()
    assert json.loads(ready) == {"ready": True, "problems": []}
    assert files_under(incoming) == [] and files_under(tmp_path / "failed") == ["bad.csv"]


def test_a_worker_waits_for_redis_and_stops_promptly_without_it(
    tmp_path: Path, redis_server: Any, observer_factory: Any, worker_factory: Any
) -> None:
    """Redis down at start: waited for; Redis gone at the stop: the stop is bounded, still exit 0."""
    config, incoming = _config(tmp_path, redis_server)
    redis_server.stop()
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}"],
                            ["true"]).start(wait_ready=False)
    worker.wait_for_line("unreachable", 15)
    redis_server.start()
    worker.wait_for_line(worker.READY_MARK, 30)
    observer_factory(config).start()
    (incoming / "a.csv").write_text("x")
    worker.wait_for_line("a.csv: exit 0", 20)
    redis_server.stop()
    worker.terminate()
    assert worker.wait(30) == 0
    assert "Traceback" not in worker.output()


def test_a_refusal_by_redis_is_one_line_until_it_changes(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """The queue's key holds a string: one error line (no traceback), then work resumes once it is fixed."""
    config, incoming = _config(tmp_path, redis_server)
    redis_client.set("files", "not a list")
    worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}"],
                            ["true"]).start()
    worker.wait_for_line("Redis refused to give an event of files: WRONGTYPE", 10)
    mark = worker.mark()
    (incoming / "a.csv").write_text("x")
    event = _event(incoming, "a.csv")
    redis_client.delete("files")
    redis_client.lpush("files", event)
    worker.wait_for_line("a.csv: exit 0", 10, since=mark)
    assert worker.output().count("Redis refused") == 1
    assert "Traceback" not in worker.output()


def test_an_acknowledgement_refused_for_a_while_is_sent_again_without_a_traceback(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    """
    Redis refuses writes while a command runs (min-replicas-to-write with no
    replica: NOREPLICAS): the acknowledgement is said once and sent again
    every second; once writes pass, the event is acknowledged, the file filed.
    """
    config, incoming = _config(tmp_path, redis_server)
    done, started, release = tmp_path / "done", tmp_path / "started", tmp_path / "release"
    script = f'touch "{started}"; while [ ! -e "{release}" ]; do sleep 0.05; done'
    worker = worker_factory(config, "data", [f"--done={done}", f"--failed={tmp_path / 'failed'}"],
                            ["/bin/sh", "-c", script, "sh", "{}"]).start()
    (incoming / "a.csv").write_text("x")
    redis_client.lpush("files", _event(incoming, "a.csv"))
    assert wait_until(started.exists, 10)
    redis_client.config_set("min-replicas-to-write", 1)
    mark = worker.mark()
    release.touch()
    worker.wait_for_line("refused a command for now (NOREPLICAS", 10, since=mark)
    assert files_under(done) == ["a.csv"]  # filed; its event waits to be acknowledged
    redis_client.config_set("min-replicas-to-write", 0)
    worker.wait_for_line("accepts the worker's commands again", 10, since=mark)
    assert wait_until(lambda: _idle(redis_client), 10)
    assert worker.output().count("refused a command for now") == 1
    assert "Traceback" not in worker.output()


def test_a_metrics_port_in_use_stops_the_worker_before_it_takes_anything(
    tmp_path: Path, redis_server: Any, redis_client: Any, worker_factory: Any
) -> None:
    config, incoming = _config(tmp_path, redis_server)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = worker_factory(config, "data", ["--delete", f"--failed={tmp_path / 'failed'}",
                                                 f"--metrics=tcp:{port}:interface=127.0.0.1"],
                                ["true"]).start(wait_ready=False)
        assert worker.wait(30) == 71
    assert "dirobserver-worker ready" not in worker.output()
    assert "Traceback" not in worker.output()
    assert redis_client.exists("files:workers") == 0
