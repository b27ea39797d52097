"""The wheel installs a working C{twistd dirobserver} (not only the editable checkout).

The test suite otherwise runs from an editable install, where the checkout's
own C{twisted/plugins} directory is on C{sys.path}.  A real install must put
the dropin into C{site-packages/twisted/plugins/} without an C{__init__.py}
that would replace Twisted's own, and pull its dependencies from the package
index.  This test builds the wheel from a copy of the repository, installs it
into a fresh virtual environment and runs twistd from there (about 15 s).

Set C{DIROBSERVER_SKIP_PACKAGING=1} to skip it when the package index cannot
be reached.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.kit.processes import REPO_ROOT, copy_checkout

pytestmark = [pytest.mark.process, pytest.mark.skipif(os.environ.get("DIROBSERVER_SKIP_PACKAGING") == "1",
                                reason="DIROBSERVER_SKIP_PACKAGING=1 (package index unreachable)")]


def run(*command, cwd: Path) -> subprocess.CompletedProcess:
    """Run C{command} in C{cwd} without this environment's Python settings; fail with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the repository (the build leaves build/ and egg-info behind)."""
    source = copy_checkout(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source, cwd=out)
    [built] = out.glob("dirobserver-*.whl")
    return built


def test_wheel_holds_the_dropin_and_every_module_but_no_twisted_init(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "dirobserver").rglob("*.py")}
    assert "dirobserver/config/settings.py" in modules
    assert modules <= names, sorted(modules - names)
    assert "twisted/plugins/dirobserver_plugin.py" in names
    # --print-sample-config reads it from the installed package.
    assert "dirobserver/app/sample.ini" in names
    # Either file would be installed over Twisted's own package files.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [name for name in names if name.startswith("twisted/") and not name.endswith(".py")]


def test_installed_wheel_gives_twistd_the_dirobserver_subcommand(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    # Dependencies (Twisted, txredisapi, prometheus_client) come from the index.
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    help_text = run(venv / "bin" / "twistd", "dirobserver", "--help", cwd=tmp_path).stdout
    assert "--config" in help_text
    # Twisted's own plugins survived the install next to ours.
    commands = run(venv / "bin" / "twistd", "--help", cwd=tmp_path).stdout
    assert "dirobserver" in commands and "web" in commands
    # The worker is the dropin's second subcommand.
    assert "dirobserver-worker" in commands
    worker_help = run(venv / "bin" / "twistd", "dirobserver-worker", "--help", cwd=tmp_path).stdout
    assert "--reclaim-after" in worker_help
    # The historical command line is installed too.
    assert (venv / "bin" / "directory_observer").exists()
    # The sample configuration ships with the package, and the version with the metadata.
    sample = run(venv / "bin" / "twistd", "dirobserver", "--print-sample-config", cwd=tmp_path).stdout
    assert sample == (REPO_ROOT / "directory_observer.ini").read_text(encoding="utf-8")
    version = run(venv / "bin" / "twistd", "dirobserver", "--version", cwd=tmp_path).stdout
    installed = run(venv / "bin" / "python", "-c", "import importlib.metadata as m; print(m.version('dirobserver'))",
                    cwd=tmp_path).stdout.strip()
    assert version.splitlines()[0] == f"dirobserver {installed}"
