"""
Summarize a py-spy raw profile: ``python -m bench.profile FILE [--top N]``.

``python -m bench --profile DIR`` records the observer of the first run of
each workload with ``py-spy record --format raw`` (idle samples, i.e. the
reactor waiting in epoll, are not recorded, so shares are shares of the time
the observer was busy).  Each line of such a file is a stack, outermost frame
first, frames separated by ``;``, then a sample count.  This prints, per
function (line numbers dropped), its self share (samples where it is the
innermost frame) and its total share (samples where it is anywhere on the
stack), biggest first.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """``doRead (/x/dirobserver/sources/inotify.py:153)`` -> ``doRead (dirobserver/sources/inotify.py)``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    name, path = m.groups()
    parts = path.split("/")
    for anchor in ("dirobserver", "twisted", "txredisapi"):
        if anchor in parts:
            path = "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor):])
            break
    else:
        path = "/".join(parts[-2:])
    return f"{name} ({path})"


def summarize(path: Path) -> tuple[int, Counter, Counter]:
    """Total samples, self samples per function, total samples per function."""
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        stack, count = m.group(1), int(m.group(2))
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    return samples, own, total


def render(path: Path, top: int = 25) -> str:
    if not path.is_file():
        return f"{path}: no such file (py-spy did not write it?)"
    samples, own, total = summarize(path)
    if not samples:
        return f"{path}: no samples"
    lines = [f"{path}: {samples} busy samples", "", "self %   function (innermost frame)"]
    for name, n in own.most_common(top):
        lines.append(f"{100.0 * n / samples:6.1f}   {name}")
    lines += ["", "total %  function (anywhere on the stack)"]
    for name, n in total.most_common(top):
        lines.append(f"{100.0 * n / samples:6.1f}   {name}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args(argv)
    for f in a.files:
        print(render(f, a.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
