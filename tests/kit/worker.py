"""
The worker daemon, ``twistd -n dirobserver-worker``, as a subprocess: for
the tests an L{tests.kit.observer.Observer} with the worker's command line
(L{Worker}), for the benchmark and the soak a
L{tests.kit.observer.LoggedObserver} likewise (L{LoggedWorker}); and the
small glue the worker's tests share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .observer import LoggedObserver, Observer
from .processes import Resources, twistd_command


class Worker(Observer):
    """``twistd -n dirobserver-worker --config=... --section=... OPTIONS -- COMMAND``."""

    READY_MARK = "dirobserver-worker ready"

    def __init__(self, config: str | Path, section: str, options: Sequence[str],
                 command: Sequence[str], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.args = worker_args(self.config, section, ["--log-level=debug", *options], command)


def worker_args(config: str | Path, section: str, options: Sequence[str],
                command: Sequence[str]) -> list[str]:
    """The worker's command line: twistd in the foreground, no pidfile."""
    return [*twistd_command(), "-n", "--pidfile=", "dirobserver-worker", f"--config={config}",
            f"--section={section}", *options, "--", *command]


class LoggedWorker(LoggedObserver):
    """
    The worker for the benchmark and the soak: its log in
    C{<workdir>/<log_name>} (the C{extra_args} of L{LoggedObserver} are the
    worker's options, then C{--} and its command).
    """

    _READY = Worker.READY_MARK.encode()
    WHAT = "the worker"

    def __init__(self, resources: Resources, config: Path, workdir: Path, section: str,
                 options: Sequence[str], command: Sequence[str], log_name: str = "worker.log",
                 **kwargs: Any) -> None:
        self.LOG_NAME = log_name
        self._section = section
        super().__init__(resources, config, workdir, [*options, "--", *command], **kwargs)

    def arguments(self, config: Path, extra_args: Sequence[str]) -> list[str]:
        split = list(extra_args).index("--")
        return worker_args(config, self._section, extra_args[:split], extra_args[split + 1:])


def recording_command(log: Path, extra: str = "") -> list[str]:
    """
    A command that appends its file's base name to C{log} (one line per run,
    O_APPEND: runs of several workers do not mix), then runs C{extra}.
    """
    script = f'printf "%s\\n" "${{1##*/}}" >> "{log}"; {extra}'
    return ["/bin/sh", "-c", script, "sh", "{}"]


def runs(log: Path) -> list[str]:
    """The base names C{recording_command} recorded, in order."""
    return log.read_text().split() if log.exists() else []


def files_under(top: Path) -> list[str]:
    """Paths of the files under C{top}, relative to it, sorted."""
    return sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file())


def worker_factory_fixture(tmp_path: Path) -> Any:
    """The body of the C{worker_factory} fixture (see test_e2e_worker)."""
    workers: list[Worker] = []

    def factory(config: str | Path, section: str, options: Sequence[str],
                command: Sequence[str], **kwargs: Any) -> Worker:
        """@param kwargs: for L{Observer} (C{preexec_fn}, say)."""
        worker = Worker(config, section, options, command, cwd=tmp_path, **kwargs)
        workers.append(worker)
        return worker

    def finish() -> None:
        for number, worker in enumerate(workers, 1):
            if worker.proc is None:
                continue
            if worker.is_running():
                worker.kill()
            print(f"--- worker #{number} {worker.args} (exit {worker.returncode})")
            print(worker.output())

    return factory, finish


WorkerFactory = Callable[[str | Path, str, Sequence[str], Sequence[str]], Worker]
