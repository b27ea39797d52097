"""
C{python -m soak --source DIR}: soak the C{dirobserver} package found in
C{DIR} (e.g. a C{git archive} of a branch) instead of this checkout's.
The soak runs again in a process that imports it (L{again_on}), whose
children find it first too; L{imported_from} tells whether this process
is that one.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.kit import REPO_ROOT

#: The directory that holds the link to --source's dirobserver (see L{again_on}).
LINKS = "DIROBSERVER_SOAK_SOURCE_LINKS"


def again_on(source: Path, argv: list[str]) -> None:
    """
    Run this soak again in a process whose C{dirobserver} is C{source}'s,
    since this process reads the keys it knows and checks the configuration
    with it; the children find it first too (L{tests.kit.processes.child_env}).
    Only C{dirobserver} comes from there (a directory holding a link to it is
    first on the path); the soak and the kit come from here, and
    C{PYTHONSAFEPATH} keeps the current directory off the path.
    """
    links = Path(tempfile.mkdtemp(prefix="dirobserver-soak-source-"))
    (links / "dirobserver").symlink_to(source / "dirobserver")
    path = [str(links), str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "DIROBSERVER_BENCH_SOURCE": str(source), LINKS: str(links),
           "PYTHONSAFEPATH": "1", "PYTHONPATH": os.pathsep.join(path)}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "soak", *argv], env)


def imported_from(source: Path) -> bool:
    """Whether the C{dirobserver} this process imports is C{source}'s."""
    import dirobserver

    return Path(dirobserver.__file__).resolve().is_relative_to(source)

