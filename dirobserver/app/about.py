"""
What the program says about itself, with no configuration: C{--version}
and C{--print-sample-config}.

The version is written once, as C{dirobserver.__version__}; the sample
configuration ships as package data (C{dirobserver/app/sample.ini}, a copy
of the repository's C{directory_observer.ini} that a test keeps identical),
so a pip-installed copy can print a file to start from.
"""

from __future__ import annotations

from importlib import metadata, resources

import twisted
from dirobserver import __version__

#: The package data file that holds the sample configuration.
SAMPLE_RESOURCE = "sample.ini"


def _installed(distribution: str) -> str:
    """The installed version of C{distribution}, or C{"unknown"}."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_text() -> str:
    """dirobserver's version, then the ones of the libraries it stands on, one a line."""
    return (f"dirobserver {__version__}\n"
            f"Twisted {twisted.__version__}\n"
            f"txredisapi {_installed('txredisapi')}\n")


def sample_config() -> str:
    """The sample configuration file, every key documented in its comments."""
    return resources.files("dirobserver.app").joinpath(SAMPLE_RESOURCE).read_text(encoding="utf-8")
