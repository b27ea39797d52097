"""Tests of the files a packaged daemon ships besides the code.

C{contrib/dirobserver.service} is checked by C{systemd-analyze verify} and
C{docs/dirobserver.8} by groff's warnings (C{man -l --warnings} where groff
itself is missing).  Both tools print their complaints on standard error and
still exit 0 for most of them (an unknown key in a unit, an undefined macro
in a page), so a check passes only on an empty standard error, and each
check first proves, on a broken copy, that the tool does complain here:
a check that cannot fail would pass silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts a process or a server (see `make unit`).
pytestmark = pytest.mark.process

REPO_ROOT = Path(__file__).resolve().parent.parent
UNIT = REPO_ROOT / "contrib" / "dirobserver.service"
MAN_PAGE = REPO_ROOT / "docs" / "dirobserver.8"

#: Where the shipped unit expects twistd; the test points it at a real one.
SHIPPED_TWISTD = "/opt/dirobserver/.venv/bin/twistd"


def _twistd() -> str:
    """The twistd of the interpreter running the tests (an executable that exists)."""
    candidate = Path(sys.executable).parent / "twistd"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("twistd")
    if found is None:
        pytest.skip("no twistd executable to point the unit's ExecStart at")
    return found


def _verify(unit: Path, manpath: Path) -> subprocess.CompletedProcess[str]:
    """C{systemd-analyze verify} of C{unit}, its man: link looked up in C{manpath}."""
    env = dict(os.environ, MANPATH=str(manpath), SYSTEMD_LOG_COLOR="0")
    # Without man(1), Documentation=man:... cannot be looked up at all; the
    # page itself is checked by the tests below.
    man = [] if shutil.which("man") else ["--man=no"]
    return subprocess.run(["systemd-analyze", "verify", *man, str(unit)],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> tuple[Path, Path]:
    """
    A copy of the shipped unit whose ExecStart names a twistd that exists,
    and a MANPATH holding the manual page its C{Documentation=} names.

    Only the path of the binary changes: every other line is verified as
    shipped.  C{systemd-analyze verify} checks that the binary exists and
    that C{man dirobserver(8)} finds a page, which it would find nowhere on
    a machine where the project is not installed.
    """
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text(encoding="utf-8")
    # The rewrite must happen, or the test would verify something else.
    assert text.count(SHIPPED_TWISTD) == 1, f"{UNIT} no longer starts {SHIPPED_TWISTD}: update this test"
    unit = tmp_path / "unit" / "dirobserver.service"
    unit.parent.mkdir()
    unit.write_text(text.replace(SHIPPED_TWISTD, _twistd()), encoding="utf-8")
    manpath = tmp_path / "man"
    (manpath / "man8").mkdir(parents=True)
    shutil.copy(MAN_PAGE, manpath / "man8" / "dirobserver.8")
    return unit, manpath


def test_systemd_analyze_reports_a_broken_unit_here(verifiable_unit):
    """The check below can fail: a misspelt key is reported on standard error."""
    unit, manpath = verifiable_unit
    broken = unit.parent.parent / "broken" / "dirobserver.service"
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("\nType=notify\n", "\nTpye=notify\n"))
    assert "Tpye=notify" in broken.read_text()
    result = _verify(broken, manpath)
    assert "Tpye" in result.stderr, (result.returncode, result.stderr)


def test_the_shipped_systemd_unit_verifies_cleanly(verifiable_unit):
    """C{systemd-analyze verify contrib/dirobserver.service}: status 0, nothing on stderr."""
    unit, manpath = verifiable_unit
    result = _verify(unit, manpath)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)


def _man_warnings(page: Path) -> subprocess.CompletedProcess[str]:
    """Format C{page} with every groff warning on, discarding the output."""
    if shutil.which("groff") is not None:
        command = ["groff", "-man", "-ww", "-z", str(page)]
    elif shutil.which("man") is not None:
        command = ["man", "-l", "--warnings", str(page)]
    else:
        pytest.skip("neither groff nor man is installed")
    return subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))


def test_groff_reports_a_broken_manual_page_here(tmp_path):
    """The check below can fail: an undefined macro is a warning on standard error."""
    broken = tmp_path / "dirobserver.8"
    broken.write_text(MAN_PAGE.read_text(encoding="utf-8") + ".XQ undefined\n", encoding="utf-8")
    result = _man_warnings(broken)
    assert "XQ" in result.stderr, (result.returncode, result.stderr)


def test_the_manual_page_formats_without_warnings():
    """C{groff -man -ww -z docs/dirobserver.8} (or C{man -l --warnings}): no warning."""
    result = _man_warnings(MAN_PAGE)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)


def test_the_manual_page_names_every_option_and_exit_status():
    """The page documents what tap.py, script.py and exits.py define."""
    from dirobserver.app import exits, tap

    page = MAN_PAGE.read_text(encoding="utf-8")
    options = [name for name, *_ in tap.Options.optParameters] + [name for name, *_ in tap.Options.optFlags]
    for name in options + ["log"]:
        assert "\\-\\-" + name.replace("-", "\\-") in page, name
    for status in (exits.EXIT_CONFIG, exits.EXIT_WATCHDOG, exits.EXIT_NO_INOTIFY):
        assert f".BR {status} " in page, status
