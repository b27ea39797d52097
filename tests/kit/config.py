"""
The observer's INI file, written for a test, the benchmark or the soak: a
C{[common]} section and one C{[name:common]} section per watched directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def section(directory: str | Path, queue: str = "q", **extra: Any) -> dict[str, Any]:
    """An active section watching C{directory} and pushing to C{queue}; C{extra} keys added."""
    return {"active": "true", "directory": str(directory), "queue": queue, **extra}


def redis_at(port: int, **extra: Any) -> dict[str, Any]:
    """C{[common]} values naming a Redis on 127.0.0.1:C{port}; C{extra} keys added."""
    return {"redis_server": "127.0.0.1", "redis_port": port, **extra}


def ini_section(header: str, values: Mapping[str, Any]) -> str:
    """
    One section's text, ending with a blank line.  Values are written with
    C{str()}; a multi-line value gets its continuation lines indented, which
    is how configparser reads it back.
    """
    lines = [f"[{header}]"]
    for key, value in values.items():
        text = str(value).replace("\n", "\n    ")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n\n"


def ini_text(sections: Mapping[str, Mapping[str, Any]], common: Mapping[str, Any] | None = None) -> str:
    """C{[common]} (empty when C{common} is None), then C{[name:common]} per entry of C{sections}, in order."""
    return ini_section("common", common or {}) + "".join(
        ini_section(f"{name}:common", values) for name, values in sections.items())


def write_config(
    directory: str | Path,
    sections: Mapping[str, Mapping[str, Any]],
    common: Mapping[str, Any] | None = None,
    filename: str = "directory_observer.ini",
) -> Path:
    """Write L{ini_text} to C{directory/filename} and return its path."""
    path = Path(directory) / filename
    path.write_text(ini_text(sections, common))
    return path
