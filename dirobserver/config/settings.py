"""The settings built from the table of keys (L{dirobserver.config.keys}).

This module reads a file into frozen, validated settings, all derived from
the table:

  - validation: every key of every active section is read by its kind;
  - the unknown-key error and its did-you-mean hint (L{KNOWN_KEYS});
  - the rule that all active sections agree on each key of scope L{COMMON};
  - the configuration reference in docs/configuration.md (L{dirobserver.config.reference}).

A new key is one row of L{KEYS} plus the field its C{field} names.  The only
rules that span several keys (a Unix socket wins over host and port;
C{--embedded-redis} defaults; Sentinels instead of an address; what TLS
and ACL keys need) are L{dirobserver.config.redis_settings}'s, and sections that
share a queue must agree on its shape (L{_check_shared_queues}).

The INI syntax and the section inheritance are L{dirobserver.config.ini}'s.  Every
problem is a L{ConfigError} whose text is one line naming the file, the
section and the key.  Standard library only: no reactor, no Twisted.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dirobserver.config import filters
from dirobserver.config.ini import BASE_SECTION, DEFAULT_SECTION, ConfigError, ExtendedConfigParser, read_text
from dirobserver.config.keys import (
    ACTIVE,
    ANNOUNCE_CLOSED,
    ANNOUNCE_CREATED,
    ANNOUNCED_SUFFIX,
    COMMON,
    GROUPS,
    KEYS,
    KNOWN_KEYS,
    SECTION,
    WATCH_AUTO,
    WATCH_FANOTIFY,
    WATCH_INOTIFY,
    WATCH_MODES,
    WATCH_POLL,
    Group,
    Key,
)
from dirobserver.config.redis_settings import RedisSettings, redis_endpoint
from dirobserver.config.values import (
    SectionReader,
)
from dirobserver.util import gc_pause

__all__ = ["ANNOUNCE_CLOSED", "ANNOUNCE_CREATED", "COMMON", "WATCH_AUTO", "WATCH_FANOTIFY", "WATCH_INOTIFY",
           "WATCH_MODES",
           "WATCH_POLL", "ConfigError", "GROUPS", "Group", "KEYS", "KNOWN_KEYS", "Key",
           "RedisSettings", "SECTION", "SectionSettings", "Settings", "load", "parse"]

@dataclass(frozen=True, slots=True)  # slots: no dict in each of thousands
class SectionSettings:
    """One active section: a monitored directory and where its events go."""

    name: str
    directory: str
    queue: str
    counter: str | None
    forced_poll: float
    poll_queue_limit: int
    ignore: tuple[re.Pattern[str], ...]
    only: tuple[re.Pattern[str], ...]
    subdirectories: bool
    #: L{ANNOUNCE_CREATED} or L{ANNOUNCE_CLOSED}
    announce: str = ANNOUNCE_CREATED
    #: seconds a file must stay unmodified before it is announced
    settle: float = 0.0
    queue_type: str = "list"
    stream_maxlen: int = 0
    #: watch every sub-directory too
    recursive: bool = False
    #: sub-directory names that a tree skips
    ignore_directories: tuple[re.Pattern[str], ...] = ()
    #: L{WATCH_AUTO}, L{WATCH_INOTIFY} or L{WATCH_POLL}
    watch_mode: str = WATCH_AUTO
    #: seconds between two scans of a polled directory
    poll_interval: float = 2.0
    #: listings announce only what was never announced (see L{record_key})
    announce_once: bool = False
    #: with C{announce_once}: seconds after which a listing announces a file again (0: never)
    reannounce_after: float = 0.0
    #: the record's key as configured (None: the queue's name and L{ANNOUNCED_SUFFIX})
    announced: str | None = None
    #: the event's fields beyond the four, in L{EXTRA_FIELDS} order
    extra_fields: tuple[str, ...] = ()
    _only_match: Callable[[str], object] = dataclasses.field(init=False, repr=False, compare=False)
    _ignore_match: Callable[[str], object] = dataclasses.field(init=False, repr=False, compare=False)
    _ignore_directory: Callable[[str], object] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed once: accepts() runs for every file event.
        object.__setattr__(self, "_only_match", filters.any_match(self.only))
        object.__setattr__(self, "_ignore_match", filters.any_match(self.ignore))
        object.__setattr__(self, "_ignore_directory", filters.any_match(self.ignore_directories))

    @property
    def record_key(self) -> str | None:
        """The Redis hash recording what was announced (None: no C{announce_once})."""
        if not self.announce_once:
            return None
        return self.announced or self.queue + ANNOUNCED_SUFFIX

    def accepts(self, name: str) -> bool:
        """True when C{name} matches some C{only} and no C{ignore} pattern."""
        return bool(self._only_match(name)) and not self._ignore_match(name)

    def accepts_path(self, path: str) -> bool:
        """L{accepts} for the last part of C{path}, a name relative to the directory."""
        return self.accepts(path[path.rfind("/") + 1:])

    @property
    def name_filter(self) -> Callable[[str], bool]:
        """What the names of events are filtered with: in a tree they are
        paths relative to the directory, and the filters apply to file names."""
        return self.accepts_path if self.recursive else self.accepts

    def accepts_directory(self, name: str) -> bool:
        """
        True when a sub-directory called C{name} belongs to the tree: not in
        C{ignore_directories}, and not ending with C{.working} (a worker's
        private directory holding a claimed file: L{dirobserver.worker.claim}).
        """
        return not name.endswith(".working") and not self._ignore_directory(name)


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    path: str
    sections: tuple[SectionSettings, ...]
    redis: RedisSettings
    inactivity_timeout: float
    max_held_events: int
    warnings: tuple[str, ...]
    #: seconds an event may be held to share a round (see L{dirobserver.util.linger})
    linger: float


#: L{KNOWN_KEYS} as a set: every key of thousands of sections is looked up.
_KNOWN = frozenset(KNOWN_KEYS)

#: The settings objects that a dotted C{Key.field} (C{"redis.host"}) fills.
_PARTS = {"redis": RedisSettings}


def _show(value: object) -> str:
    """A value as the file would write it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and all(isinstance(item, tuple) for item in value):
        return "; ".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in value)
    return str(value)


def _agreed(path: str, common: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The values of the L{COMMON} keys, once every active section agrees on them."""
    first_name, first = common[0]
    for name, values in common[1:]:
        for key in KEYS:
            if key.name in first and values[key.name] != first[key.name]:
                shown = "values not shown" if key.secret else \
                    f"{_show(first[key.name])} and {_show(values[key.name])}"
                raise ConfigError(f"{path}: [{first_name}] and [{name}] disagree on {key.name} "
                                  f"({shown}): all active sections must {key.group.agree}")
    return first


def _refuse_unknown_keys(parser: ExtendedConfigParser) -> None:
    """Refuse a key of any section (inactive ones and C{[DEFAULT]} too) not in L{KEYS}.

    An error, not a warning: a misspelled key silently changes what runs
    (C{actve = true} leaves a section unwatched while the daemon reports
    ready; C{recursiv = true} leaves a tree flat).  Every key the original
    pyinotify program read or its sample wrote is in L{KEYS}, so files
    written for it are not refused.  The message names the first unknown
    key (sections in file order, C{[DEFAULT]} last) and how many more there
    are.
    """
    declared = parser.sections() + [DEFAULT_SECTION] * parser.has_section(DEFAULT_SECTION)
    unknown = [(name, key) for name in declared for key in parser.keys(name) if key not in _KNOWN]
    if not unknown:
        return
    name, key = unknown[0]
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    more = f"; and {len(unknown) - 1} more unknown keys" if len(unknown) > 1 else ""
    raise ConfigError(f"{parser.path}: [{name}] unknown key {key!r}{hint}{more}")


def parse(text: str, path: str, *, redis_optional: bool = False) -> Settings:
    """Validate the configuration C{text}.

    @param path: names the file in messages; relative C{directory} (and
        C{redis_unix_socket}) values are resolved against its directory.
    @param redis_optional: (C{--embedded-redis}) C{redis_server} and
        C{redis_port} default to 127.0.0.1:6379.
    @raise ConfigError: only.
    """
    parser = ExtendedConfigParser(path)
    parser.read_string(text)
    _refuse_unknown_keys(parser)
    warnings: dict[str, None] = {}  # an ordered set: inherited warnings appear once
    active = [name for name in parser.sections()
              if name != BASE_SECTION and ACTIVE.read(SectionReader(parser, name, warnings))]
    if not active:
        raise ConfigError(f"{path}: no active section (set active=true in at least one section)")
    sections, common = [], []
    for name in active:
        r = SectionReader(parser, name, warnings)
        values = {key.name: key.read(r) for key in KEYS if key.field}
        redis_endpoint(r, values, redis_optional)
        sections.append(SectionSettings(name=name, **{
            key.field: values[key.name] for key in KEYS if key.field and key.scope == SECTION}))
        common.append((name, {key.name: values[key.name] for key in KEYS if key.field and key.scope == COMMON}))
    _warn_shared_directories(path, sections, warnings)
    _check_shared_queues(path, sections)
    _check_records(path, sections, warnings)
    return _settings(path, sections, _agreed(path, common), warnings)


def _warn_shared_directories(path: str, sections: list[SectionSettings], warnings: dict[str, None]) -> None:
    seen: dict[str, str] = {}
    for section in sections:
        if section.directory in seen:
            warnings[f"{path}: [{seen[section.directory]}] and [{section.name}] both watch "
                     f"{section.directory}"] = None
        seen.setdefault(section.directory, section.name)


def _check_shared_queues(path: str, sections: list[SectionSettings]) -> None:
    """Sections that push to one queue must agree on its shape (a key is one type)."""
    seen: dict[str, SectionSettings] = {}
    for section in sections:
        first = seen.setdefault(section.queue, section)
        for key in ("queue_type", "stream_maxlen"):
            mine, theirs = getattr(section, key), getattr(first, key)
            if mine != theirs:
                raise ConfigError(f"{path}: [{first.name}] and [{section.name}] both push to queue "
                                  f"{section.queue} but disagree on {key} ({theirs} and {mine})")


def _check_records(path: str, sections: list[SectionSettings], warnings: dict[str, None]) -> None:
    """
    Each C{announce_once} section has a record of its own: two sections
    recording in one hash would take each other's names for their own
    (the fields are paths relative to each directory).  A record is not a
    queue either (a key has one type).
    """
    queues = {section.queue for section in sections}
    owners: dict[str, str] = {}
    for section in sections:
        key = section.record_key
        if key is None:
            if section.reannounce_after or section.announced:
                warnings[f"{path}: [{section.name}] reannounce_after and announced have no effect "
                         "without announce_once = true"] = None
            continue
        if key in queues:
            raise ConfigError(f"{path}: [{section.name}] announced: {key} is a queue; the record of "
                              "what was announced needs a key of its own")
        if key in owners:
            raise ConfigError(f"{path}: [{owners[key]}] and [{section.name}] both record what they "
                              f"announced in {key}; give one of them its own `announced` key")
        owners[key] = section.name


def _settings(path: str, sections: list[SectionSettings], agreed: dict[str, Any],
              warnings: dict[str, None]) -> Settings:
    """Put each agreed value where its key's C{field} says (C{redis.host}: a part)."""
    top: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {part: {} for part in _PARTS}
    for key in KEYS:
        if key.name in agreed:
            part, _, attr = str(key.field).rpartition(".")
            (parts[part] if part else top)[attr] = agreed[key.name]
    built: dict[str, Any] = {part: cls(**parts[part]) for part, cls in _PARTS.items()}
    return Settings(path=path, sections=tuple(sections), warnings=tuple(warnings), **built, **top)


def load(path: str, *, redis_optional: bool = False) -> Settings:
    """Read the UTF-8 file C{path} and L{parse} it; raises L{ConfigError} only."""
    text = read_text(path)
    # Roughly one section per header line: thousands are parsed in bulk.
    with gc_pause.bulk(text.count("\n[")):
        return parse(text, path, redis_optional=redis_optional)
