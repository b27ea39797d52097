"""
The file-creating child of the benchmark: ``python -m bench.creator MODE ...``.

It runs as its own process so that creating files competes with the observer
for the CPU the way a real producer would.  Files are created empty with
C{os.open(O_CREAT | O_EXCL)} + C{os.close}, relative to a directory
descriptor (no path lookup per file).  Times are C{time.time()} taken right
after C{os.open} returns (the file exists from then on).  At the end the
child prints one JSON line with its figures (C{burst}: also the CPU its
loop used); SIGUSR1 makes any mode stop
early (and still print), which is how the trickle is ended.

Modes (names are fixed so the consumer can map a name back to its index):

 - ``burst DIR COUNT``: files C{f00000000} ... as fast as possible;
 - ``paced DIR RATE SECONDS TIMES``: files C{p00000000} ... on a schedule of
   RATE per second; each creation time goes to the file TIMES (an array of
   doubles, index = file number);
 - ``paced-closed DIR RATE SECONDS TIMES``: the same, with the time taken
   right after each file's close (what a section with C{announce = closed}
   waits for);
 - ``trickle DIR INTERVAL TIMES``: files C{t000000} ... one every INTERVAL
   seconds until SIGUSR1; times as for ``paced``;
 - ``tree ROOT COUNT``: one file C{x} in each of ROOT/d00000 ... as fast as
   possible;
 - ``tree-fill ROOT DIRS FILES``: FILES files C{f00000000} ... spread over
   DIRS new sub-directories ROOT/d00000 ... (a tree present before start);
 - ``tree-burst ROOT DIRS PER_DIR``: DIRS new sub-directories ROOT/b00000/x
   ..., each made (two levels) and filled at once with PER_DIR files
   C{g00000000} ..., as fast as possible;
 - ``spread ROOT TARGETS COUNT``: COUNT files C{s00000000} ... in existing
   sub-directories of ROOT, as fast as possible: TARGETS is a file of their
   paths relative to ROOT, one a line, and file I goes to line I modulo
   their number (every directory gets a file in turn).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from array import array

FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
_stop = False


def _on_stop(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def burst(directory: str, count: int) -> dict:
    names = [b"f%08d" % i for i in range(count)]  # built before the clock starts
    return _create(directory, names)


def _create(directory: str, names: list[bytes]) -> dict:
    """Create C{names} (relative to C{directory}) as fast as possible, until done or told to stop."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    op, cl = os.open, os.close
    cpu0 = time.process_time()
    t_first = time.time()
    made = 0
    for name in names:
        cl(op(name, FLAGS, 0o644, dir_fd=dfd))
        made += 1
        if _stop and made % 1024 == 0:
            break
    t_last = time.time()
    cpu = time.process_time() - cpu0
    os.close(dfd)
    span = t_last - t_first
    return {"count": made, "t_first": t_first, "t_last": t_last, "rate": made / span if span > 0 else 0.0,
            "cpu_s": cpu}


def paced(directory: str, rate: float, seconds: float, times_path: str, after_close: bool = False) -> dict:
    count = int(rate * seconds)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    names = [b"p%08d" % i for i in range(count)]
    times = array("d", bytes(8 * count))
    op, cl, now = os.open, os.close, time.time
    clock = time.perf_counter
    start = clock() + 0.01
    max_lag = 0.0
    i = 0
    while i < count and not _stop:
        # Every file whose time has come, then sleep until the next one.
        elapsed = clock() - start
        due = min(count, int(elapsed * rate) + 1) if elapsed >= 0 else 0
        if due > i:
            lag = elapsed - i / rate
            if lag > max_lag:
                max_lag = lag
        while i < due:
            fd = op(names[i], FLAGS, 0o644, dir_fd=dfd)
            if after_close:
                cl(fd)
                times[i] = now()
            else:
                times[i] = now()
                cl(fd)
            i += 1
        wait = start + i / rate - clock()
        if wait > 0:
            time.sleep(wait)
    os.close(dfd)
    with open(times_path, "wb") as f:
        times[:i].tofile(f)
    span = times[i - 1] - times[0] if i > 1 else 0.0
    return {
        "count": i,
        "t_first": times[0] if i else 0.0,
        "t_last": times[i - 1] if i else 0.0,
        "rate": (i - 1) / span if span > 0 else 0.0,
        "max_schedule_lag_ms": max_lag * 1000.0,
    }


def trickle(directory: str, interval: float, times_path: str) -> dict:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    times = array("d")
    clock = time.perf_counter
    start = clock()
    i = 0
    while not _stop and i < 1_000_000:
        fd = os.open(b"t%06d" % i, FLAGS, 0o644, dir_fd=dfd)
        times.append(time.time())
        os.close(fd)
        i += 1
        wait = start + i * interval - clock()
        if wait > 0:
            time.sleep(wait)
    os.close(dfd)
    with open(times_path, "wb") as f:
        times.tofile(f)
    return {"count": i, "t_first": times[0] if i else 0.0, "t_last": times[-1] if i else 0.0}


def tree(root: str, count: int) -> dict:
    return _create(root, [b"d%05d/x" % i for i in range(count)])


def _fill(root: str, dirs: int, files: int, prefix: bytes, nested: bool) -> dict:
    """C{files} files over C{dirs} new sub-directories, each made then filled."""
    per_dir, extra = divmod(files, dirs)
    op, cl, mkdir = os.open, os.close, os.makedirs
    t_first = time.time()
    made = 0
    for d in range(dirs):
        sub = os.path.join(root.encode(), b"b%05d/x" % d if nested else b"d%05d" % d)
        mkdir(sub)
        dfd = op(sub, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(per_dir + (d < extra)):
            cl(op(b"%s%08d" % (prefix, made), FLAGS, 0o644, dir_fd=dfd))
            made += 1
        cl(dfd)
        if _stop:
            break
    t_last = time.time()
    span = t_last - t_first
    return {"count": made, "t_first": t_first, "t_last": t_last, "rate": made / span if span > 0 else 0.0}


def spread(root: str, targets_path: str, count: int) -> dict:
    with open(targets_path, "rb") as f:
        targets = f.read().split()
    # Paths relative to the root's descriptor: a lookup of a few names per
    # file, no absolute path (built before the clock starts).
    return _create(root, [b"%s/s%08d" % (targets[i % len(targets)], i) for i in range(count)])


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGUSR1, _on_stop)
    mode, args = argv[0], argv[1:]
    if mode == "burst":
        result = burst(args[0], int(args[1]))
    elif mode in ("paced", "paced-closed"):
        result = paced(args[0], float(args[1]), float(args[2]), args[3], after_close=mode == "paced-closed")
    elif mode == "trickle":
        result = trickle(args[0], float(args[1]), args[2])
    elif mode == "tree":
        result = tree(args[0], int(args[1]))
    elif mode == "tree-fill":
        result = _fill(args[0], int(args[1]), int(args[2]), b"f", nested=False)
    elif mode == "tree-burst":
        result = _fill(args[0], int(args[1]), int(args[1]) * int(args[2]), b"g", nested=True)
    elif mode == "spread":
        result = spread(args[0], args[1], int(args[2]))
    else:
        sys.stderr.write(f"unknown mode {mode!r}\n")
        return 2
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
