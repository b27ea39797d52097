"""The oldest Python that setup.py accepts (3.10) can run the code.

The suite itself runs on the development interpreter (newer), where syntax
or library calls from a later version would go unnoticed.  These tests run
a real C{python3.10} when the machine has one and skip, saying so, when it
does not.  They also prove that the configuration modules import with the
standard library alone (no Twisted), so that a file can be checked anywhere.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

REPO_ROOT = Path(__file__).resolve().parent.parent
OLDEST = (3, 10)
#: Modules that must import with nothing but the standard library.
STDLIB_ONLY = ("dirobserver.config.settings", "dirobserver.config.keys", "dirobserver.config.ini",
               "dirobserver.config.filters", "dirobserver.config.values")


def find_python310() -> str | None:
    """A working python3.10 interpreter, or None."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10.*/bin/python3.10")))
    candidates.append(shutil.which("python3.10"))  # may be a pyenv shim that refuses to run
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(OLDEST):
            return candidate
    return None


PYTHON310 = find_python310()
needs_310 = pytest.mark.skipif(PYTHON310 is None, reason="no python3.10 interpreter on this machine "
                               "(looked in ~/.pyenv/versions/3.10.*/bin and on PATH)")


def test_setup_py_requires_the_version_tested_here():
    setup = (REPO_ROOT / "setup.py").read_text()
    assert re.search(r'python_requires\s*=\s*">=\s*(\d+)\.(\d+)"', setup).groups() == tuple(map(str, OLDEST))


@needs_310
def test_every_module_byte_compiles_with_python310():
    files = sorted(str(p) for d in ("dirobserver", "twisted/plugins") for p in (REPO_ROOT / d).rglob("*.py"))
    assert str(REPO_ROOT / "dirobserver" / "config" / "settings.py") in files
    # compile() in memory: nothing written next to the sources.
    script = ("import json, sys\nbad = []\nfor path in sys.argv[1:]:\n"
              "    try:\n        compile(open(path, encoding='utf-8').read(), path, 'exec', dont_inherit=True)\n"
              "    except SyntaxError as exc:\n        bad.append(f'{path}:{exc.lineno}: {exc.msg}')\n"
              "print(json.dumps(bad))")
    result = subprocess.run([PYTHON310, "-c", script, *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -I: no environment, no user site, no current directory; -S: no site-packages
# at all, so only the standard library and the checkout can be imported; -B:
# no .pyc written into the checkout.  (The checkout goes last on the path:
# nothing before it can hold a dirobserver.)
LOAD_SAMPLE = """\
import json, sys
sys.path.append(sys.argv[1])
for name in sys.argv[3:]:
    __import__(name)
from dirobserver.config import settings as config
settings = config.load(sys.argv[2])
foreign = sorted(m for m in sys.modules
                 if m.partition(".")[0] not in (*sys.stdlib_module_names, "__main__", "dirobserver"))
print(json.dumps({"sections": [s.name for s in settings.sections], "redis": settings.redis.describe(),
                  "foreign": foreign, "version": list(sys.version_info[:2])}))
"""


@pytest.mark.parametrize("python", [
    pytest.param(sys.executable, id="this-python"),
    pytest.param(PYTHON310, id="python3.10", marks=needs_310),
])
def test_configuration_modules_import_with_the_standard_library_only(python):
    sample = REPO_ROOT / "directory_observer.ini"
    result = subprocess.run([python, "-I", "-S", "-B", "-c", LOAD_SAMPLE, str(REPO_ROOT), str(sample), *STDLIB_ONLY],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["foreign"] == []
    assert loaded["sections"] == ["stage1", "stage2"]
    assert loaded["redis"] == "127.0.0.1:8080"
    if python == PYTHON310:
        assert tuple(loaded["version"]) == OLDEST
