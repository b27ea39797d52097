"""
The historical command line: ``directory_observer --config=PATH [--log=PATH]``.

It runs the same service as ``twistd -n dirobserver``, in the foreground,
logging to standard output unless ``--log`` names a file.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    """Parse the historical options and hand over to twistd."""
    parser = argparse.ArgumentParser(
        prog="directory_observer",
        description="Watch directories and push file events to Redis lists "
        "(same as: twistd -n dirobserver --config=PATH).",
    )
    parser.add_argument("-c", "--config", required=True, help="configuration file")
    parser.add_argument("--log", help="log file (default: standard output)")
    parser.add_argument(
        "--embedded-redis", action="store_true", help="start a private Redis when none answers"
    )
    parser.add_argument("--log-level", help="debug, info (default), warn, error or critical")
    parser.add_argument("--log-format", help="text (default) or json")
    parser.add_argument("--metrics", help="serve /metrics, /livez, /readyz on this endpoint")
    args = parser.parse_args(argv)
    twistd_argv = ["twistd", "--nodaemon", "--pidfile="]
    if args.log:
        twistd_argv.append(f"--logfile={args.log}")
    twistd_argv += ["dirobserver", f"--config={args.config}"]
    if args.embedded_redis:
        twistd_argv.append("--embedded-redis")
    for option in ("log_level", "log_format", "metrics"):
        value = getattr(args, option)
        if value:
            twistd_argv.append(f"--{option.replace('_', '-')}={value}")

    from twisted.scripts import twistd

    sys.argv = twistd_argv
    twistd.run()


if __name__ == "__main__":
    main()
