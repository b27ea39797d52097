"""
C{twistd dirobserver --config=FILE --check}: everything that can be
validated without a side effect, then exit 0 (good) or 78 (bad).

It reads the file and every key, and for each active section looks at its
directory (exists, is a directory, can be read), the filesystem it is on
and the watch mode it would get (L{dirobserver.sources.fstype}); it reads
the TLS files (L{dirobserver.redis.tls.check}) and checks what
C{--embedded-redis} needs.  It connects to nothing, watches nothing and
writes nothing: no Redis, no inotify instance, no log file, no pidfile
(twistd has not started anything when the options are parsed).

The same start-up checks run before a normal start (L{startup_problem}),
so C{--check} and a start refuse the same files.
"""

from __future__ import annotations

import os
from typing import TextIO

from dirobserver.app.exits import EXIT_CONFIG
from dirobserver.config import settings as config
from dirobserver.config.settings import RedisSettings, SectionSettings
from dirobserver.sources import fanotify_choice, fstype


def startup_problem(path: str, redis: RedisSettings, embedded: bool) -> str | None:
    """
    What stops a start beyond the file itself, in one line; None when nothing.

    @param path: the configuration file, named in a TLS problem.
    @param embedded: C{--embedded-redis} was given.
    """
    if redis.tls:
        from dirobserver.redis import tls

        problem = tls.check(redis)
        if problem is not None:
            return f"{path}: {problem}"
    if embedded:
        from dirobserver.app.embedded_binary import EmbeddedRedisUnavailable, find_server_binary

        if redis.unix_socket:
            return "--embedded-redis serves TCP only; remove redis_unix_socket or drop the flag"
        if redis.sentinels or redis.tls:
            return ("--embedded-redis runs one plain server; remove redis_sentinels and "
                    "redis_tls or drop the flag")
        try:
            find_server_binary()
        except EmbeddedRedisUnavailable as e:
            return str(e)
    return None


def _directory(section: SectionSettings) -> tuple[str, str]:
    """C{(verdict, detail)} for the directory of C{section}: verdict is
    C{"ok"}, C{"warning"} or C{"problem"}."""
    path = section.directory
    if not os.path.lexists(path):
        # Not fatal when the daemon runs: it is watched as soon as it appears.
        return "warning", f"{path} does not exist yet (it is watched as soon as it appears)"
    if not os.path.isdir(path):
        return "problem", f"{path} is not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "problem", f"{path} cannot be read by this user (uid {os.getuid()})"
    try:
        filesystem = fstype.filesystem_name(fstype.statfs_type(path))
    except OSError as e:
        return "problem", f"{path}: cannot tell its filesystem ({e.strerror})"
    mode, why = fstype.choose_mode(section.watch_mode, path)
    if mode == config.WATCH_FANOTIFY:
        refused = fanotify_choice.problem(path)
        if refused is not None:
            return "problem", f"{path}: watch_mode = fanotify cannot be had: {refused}"
    how = f"polled every {section.poll_interval:g} s" if mode == config.WATCH_POLL else mode
    tree = ", recursive" if section.recursive else ""
    because = f" ({why})" if why else ""
    return "ok", f"{path} on {filesystem}: {how}{because}{tree}"


def run_check(path: str, embedded: bool, out: TextIO) -> int:
    """
    Check the configuration file C{path}; write one line per active section
    and a summary to C{out}.

    @return: 0 when the daemon would start with it, else L{EXIT_CONFIG}.
    """
    try:
        settings = config.load(path, redis_optional=embedded)
    except config.ConfigError as e:
        out.write(f"dirobserver: {e}\n")
        out.write(f"dirobserver: {path}: bad: 1 problem\n")
        return EXIT_CONFIG
    problems = warnings = 0
    for section in settings.sections:
        verdict, detail = _directory(section)
        problems += verdict == "problem"
        warnings += verdict == "warning"
        shape = f"{section.queue_type} {section.queue}"
        out.write(f"[{section.name}] {verdict}: {detail}; events to {shape}\n")
    for warning in settings.warnings:
        warnings += 1
        out.write(f"warning: {warning}\n")
    redis = settings.redis
    problem = startup_problem(path, redis, embedded)
    if problem is not None:
        problems += 1
        out.write(f"problem: {problem}\n")
    tls = ", TLS files readable" if redis.tls and problem is None else ""
    out.write(f"Redis at {redis.describe()}{tls} (not contacted)\n")
    verdict = "bad" if problems else "good"
    out.write(f"dirobserver: {path}: {verdict}: {len(settings.sections)} active sections, "
              f"{problems} problems, {warnings} warnings\n")
    return EXIT_CONFIG if problems else 0
