"""Every configuration key, described once, and the settings built from them.

L{KEYS} is the table: for each key its name, its scope, its concern group,
its kind (how its text is parsed and bounded, see L{dirobserver.config.values}), its
default, one line of help, and the settings field it fills.  The rest is
derived from it:

  - validation: every key of every active section is read by its kind;
  - the unknown-key warning and its did-you-mean hint (L{KNOWN_KEYS});
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
from dirobserver.config.redis_settings import EMBEDDED_HOST, EMBEDDED_PORT, RedisSettings, redis_endpoint
from dirobserver.config.values import (
    NULL_WORDS,
    Addresses,
    Boolean,
    Choice,
    Number,
    Path,
    Patterns,
    SectionReader,
    Text,
)
from dirobserver.util import gc_pause as heap

__all__ = ["ANNOUNCE_CLOSED", "ANNOUNCE_CREATED", "COMMON", "WATCH_AUTO", "WATCH_INOTIFY", "WATCH_MODES",
           "WATCH_POLL", "ConfigError", "GROUPS", "Group", "KEYS", "KNOWN_KEYS", "Key",
           "RedisSettings", "SECTION", "SectionSettings", "Settings", "load", "parse"]

#: One value per section.
SECTION = "section"
#: One value for the whole daemon: every active section must agree on it.
COMMON = "common"
#: Always ignored: half-written files are never announced.
WORKING_PATTERN = r"^.*\.working$"
#: Where C{--embedded-redis} puts its server when the file names none.
#: C{announce}: when the name appears (the historical behaviour).
ANNOUNCE_CREATED = "created"
#: C{announce}: once the file is complete (closed by its writer).
ANNOUNCE_CLOSED = "closed"
#: The longest C{settle}: a day.  Longer would hold files back for no one.
MAX_SETTLE = 86400
#: C{watch_mode}: inotify, or polling on network and FUSE filesystems.
WATCH_AUTO = "auto"
#: C{watch_mode}: inotify only (the historical behaviour).
WATCH_INOTIFY = "inotify"
#: C{watch_mode}: scans every C{poll_interval}, no inotify.
WATCH_POLL = "poll"
WATCH_MODES = (WATCH_AUTO, WATCH_INOTIFY, WATCH_POLL)
#: The shortest and longest C{poll_interval}, in seconds.
MIN_POLL_INTERVAL, MAX_POLL_INTERVAL = 0.1, 3600

Kind = Boolean | Number | Text | Path | Patterns | Choice | Addresses


@dataclass(frozen=True)
class Group:
    """A concern keys belong to; the reference shows one table per group.

    @ivar agree: ends "all active sections must ..." for its common keys.
    """

    title: str
    about: str
    agree: str = "share one value"


WATCHING = Group("Watching", "which directory a section watches, and when it lists it again")
FILTERS = Group("Filters", "which names in that directory are announced")
COMPLETE = Group("Complete files", "when a file is announced: when its name appears, or once it is "
                 "complete (see [When a file is announced](design.md#when-a-file-is-announced))")
OUTPUT = Group("Output", "where a section's events go")
REDIS = Group("Redis", "the one Redis server", agree="use one Redis server")
DAEMON = Group("Daemon", "the process as a whole")
GROUPS = (WATCHING, FILTERS, COMPLETE, OUTPUT, REDIS, DAEMON)


@dataclass(frozen=True)
class Key:
    """One configuration key: a row of L{KEYS}.

    @ivar scope: L{SECTION} or L{COMMON}.
    @ivar default: text parsed by C{kind} when the key is unset; C{""} means
        none; None means required in an active section.
    @ivar help: one line of markdown for the reference.
    @ivar field: where the value goes: a L{SectionSettings} field (scope
        L{SECTION}), a L{Settings} field, or C{redis.}I{field} of
        L{RedisSettings}; None for C{active}, which picks the sections.
    @ivar check: a rule of this key alone, C{check(reader, key, value)}
        returning the value to keep (or raising C{reader.fail(...)}).
    @ivar shown_default: the reference's default column, when the default
        depends on other keys or options.
    @ivar secret: never print the value (in disagreement messages).
    """

    name: str
    scope: str
    group: Group
    kind: Kind
    default: str | None
    help: str
    field: str | None
    check: Callable[[SectionReader, Key, Any], Any] | None = None
    shown_default: str | None = None
    secret: bool = False

    def read(self, r: SectionReader) -> Any:
        """This key's value for the section C{r} reads, checked."""
        value = self.kind.read(r, self.name, self.default)
        return value if self.check is None else self.check(r, self, value)

    def default_markdown(self) -> str:
        """The default as the reference shows it."""
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "required when active"
        return f"`{self.default}`" if self.default else "none"


def _ignore_working_files(r: SectionReader, key: Key, patterns: tuple[re.Pattern[str], ...]) -> Any:
    if WORKING_PATTERN in [p.pattern for p in patterns]:
        return patterns
    return filters.compile_patterns([*(p.pattern for p in patterns), WORKING_PATTERN])


def _not_empty(r: SectionReader, key: Key, patterns: tuple[re.Pattern[str], ...]) -> Any:
    if not patterns:
        raise r.fail(key.name, "empty list would skip every file (remove the key to accept all names)")
    return patterns


def _finite_timeout(r: SectionReader, key: Key, timeout: float) -> float:
    if timeout:
        return timeout
    # The old program read 0 as "wait forever"; with held events that would
    # silently stall the whole pipeline, so the default is used instead.
    default = float(key.default or 0)
    r.warn(key.name, "0 (no timeout) is not supported: a Redis that never answers would "
           f"hold events forever; using {default:g} seconds")
    return default


def _needs_recursive(r: SectionReader, key: Key, patterns: tuple[re.Pattern[str], ...]) -> Any:
    if patterns and not _BY_NAME["recursive"].read(r):
        r.warn(key.name, "has no effect without recursive = true (sub-directories are not watched)")
    return patterns


def _zero_disables(r: SectionReader, key: Key, value: float) -> float:
    return value if value > 0 else 0.0


KEYS: tuple[Key, ...] = (
    Key("active", SECTION, WATCHING, Boolean(), "false", field=None,
        help="watch this section's directory (`true/false`, `yes/no`, `on/off`, `1/0`)"),
    Key("directory", SECTION, WATCHING, Path(), None, field="directory",
        help="the monitored directory. `~` is expanded. **A relative path is resolved against the "
             "directory of the configuration file**, not the working directory, so daemon mode and "
             "systemd see the same path"),
    Key("subdirectories", SECTION, WATCHING, Boolean(), "false", field="subdirectories",
        help="also announce sub-directories created in (or listed in) the directory. "
             "Their content is watched only with `recursive`"),
    Key("recursive", SECTION, WATCHING, Boolean(), "false", field="recursive",
        help="also watch every sub-directory, at any depth, and the ones created or moved in later. "
             "A file anywhere in the tree is announced on the section's queue with `directory` = the "
             "directory that holds it. See [Trees](design.md#trees-recursive)"),
    Key("watch_mode", SECTION, WATCHING, Choice(WATCH_MODES), WATCH_AUTO, field="watch_mode",
        help="`inotify`; `poll`: no inotify, the directory (tree) is scanned every `poll_interval`; "
             "`auto`: `poll` on network and FUSE filesystems (NFS, CIFS/SMB, 9p, Ceph, FUSE...), where "
             "inotify does not see what other hosts write, else `inotify`. See "
             "[Network filesystems](design.md#network-filesystems-watch_mode-and-poll_interval)"),
    Key("poll_interval", SECTION, WATCHING, Number(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL), "2",
        field="poll_interval",
        help="seconds between two scans of a polled directory (`watch_mode = poll`, a network "
             "filesystem, or sub-directories past the inotify watch limit)"),
    Key("forced_poll", SECTION, WATCHING, Number(0), "0", field="forced_poll",
        help="seconds between forced listings (`0` = none). The listing at start-up always happens"),
    Key("poll_queue_limit", SECTION, WATCHING, Number(0, integer=True), "10000", field="poll_queue_limit",
        help="a listing pushes nothing once the queue's length (`LLEN`; for a stream, the backlog "
             "of its slowest consumer group, see [Streams](operations.md#redis-streams)) reaches this, and pushes "
             "at most `limit - length` (`0` = no limit). See [Listings](design.md#listings-and-poll_queue_limit)"),
    Key("ignore", SECTION, FILTERS, Patterns(), "", field="ignore", check=_ignore_working_files,
        help="Python `re` patterns, matched from the start of the name, with `DOTALL` so that `.` "
             "also matches a newline inside a name. Matching names are skipped. "
             "`^.*\\.working$` is always added"),
    Key("only", SECTION, FILTERS, Patterns(), filters.ACCEPT_ALL, field="only", check=_not_empty,
        help="names that match none of them are skipped. An empty list is an error"),
    Key("ignore_directories", SECTION, FILTERS, Patterns(), "", field="ignore_directories",
        check=_needs_recursive,
        help="with `recursive`: sub-directories whose name matches one of these patterns (as for "
             "`ignore`) are neither watched nor listed, nor is anything below them; for example `^\\.` "
             "for hidden staging directories. `ignore` and `only` apply to file names"),
    Key("announce", SECTION, COMPLETE, Choice((ANNOUNCE_CREATED, ANNOUNCE_CLOSED)), ANNOUNCE_CREATED,
        field="announce",
        help="`created`: a file is announced when its name appears. `closed`: once it is complete, "
             "that is once its writer closed it; a name moved, renamed or linked into the directory "
             "is complete at once"),
    Key("settle", SECTION, COMPLETE, Number(0, MAX_SETTLE), "0", field="settle",
        help="seconds a file must stay unmodified before it is announced (a write, a close or a "
             "change of attributes starts the wait again), in both modes, for live events and for "
             "listings. `0`: no wait. With `announce = closed`, a listing at start-up cannot tell a file "
             "still being written without it"),
    Key("queue", SECTION, OUTPUT, Text(), None, field="queue",
        help="the Redis key that receives the events (a list, or a stream with `queue_type = stream`)"),
    Key("queue_type", SECTION, OUTPUT, Choice(("list", "stream")), "list", field="queue_type",
        help="`list`: `LPUSH` of the JSON event. `stream`: one `XADD queue * directory .. filename .. "
             "event .. event_timestamp ..` entry per event. See [Streams](operations.md#redis-streams)"),
    Key("stream_maxlen", SECTION, OUTPUT, Number(0, integer=True), "0", field="stream_maxlen",
        help="with `queue_type = stream`: `MAXLEN ~ n` on every `XADD` (`0` = no trimming). Trimming "
             "removes entries whether or not a consumer group has read them"),
    Key("counter", SECTION, OUTPUT, Text(NULL_WORDS), "", field="counter",
        help="a Redis key incremented by the number of events pushed to `queue`, in the same "
             "`MULTI/EXEC` as the push, so the list and the counter agree. `null` or `none`: none"),
    Key("redis_unix_socket", COMMON, REDIS, Path(NULL_WORDS), "", field="redis.unix_socket",
        help="path of a Unix socket. When set, it is used, and `redis_server` and `redis_port` "
             "are not required (if set, they are ignored with a warning). `null` or `none`: none"),
    Key("redis_server", COMMON, REDIS, Text(), "", field="redis.host", shown_default="required",
        help="host name or address of the Redis server. With `--embedded-redis` it defaults "
             f"to `{EMBEDDED_HOST}`"),
    Key("redis_port", COMMON, REDIS, Number(1, 65535, integer=True), "", field="redis.port",
        shown_default="required",
        help=f"port of the Redis server. With `--embedded-redis` it defaults to `{EMBEDDED_PORT}`"),
    Key("redis_sentinels", COMMON, REDIS, Addresses(), "", field="redis.sentinels",
        help="the Sentinels to ask for the master, tried in turn. When set, `redis_server`, "
             "`redis_port` and `redis_unix_socket` must not be. See [Sentinel](operations.md#sentinel)"),
    Key("redis_sentinel_master", COMMON, REDIS, Text(), "", field="redis.sentinel_master",
        shown_default="required with `redis_sentinels`",
        help="the name the Sentinels monitor the master under"),
    Key("redis_sentinel_username", COMMON, REDIS, Text(), "", field="redis.sentinel_username",
        help="ACL user for the Sentinels themselves (needs `redis_sentinel_password`)"),
    Key("redis_sentinel_password", COMMON, REDIS, Text(), "", field="redis.sentinel_password",
        secret=True, help="`AUTH` password for the Sentinels themselves"),
    Key("redis_username", COMMON, REDIS, Text(), "", field="redis.username",
        help="ACL user (Redis 6+): `AUTH redis_username redis_password` (needs `redis_password`)"),
    Key("redis_password", COMMON, REDIS, Text(), "", field="redis.password", secret=True,
        help="`AUTH` password"),
    Key("redis_db", COMMON, REDIS, Number(0, integer=True), "", field="redis.db",
        help="`SELECT` database number (none: the server's database 0)"),
    Key("redis_tls", COMMON, REDIS, Boolean(), "false", field="redis.tls",
        help="connect with TLS (to the Sentinels too). See [TLS](operations.md#tls)"),
    Key("redis_tls_ca", COMMON, REDIS, Path(), "", field="redis.tls_ca",
        shown_default="the system's trust store",
        help="PEM file of the CA certificates that the server's certificate must chain to"),
    Key("redis_tls_cert", COMMON, REDIS, Path(), "", field="redis.tls_cert",
        help="PEM file of the client certificate (for `tls-auth-clients`); needs `redis_tls_key`"),
    Key("redis_tls_key", COMMON, REDIS, Path(), "", field="redis.tls_key",
        help="PEM file of the client certificate's private key"),
    Key("redis_tls_server_name", COMMON, REDIS, Text(), "", field="redis.tls_server_name",
        shown_default="the host connected to",
        help="the name (or IP address) the server's certificate must be valid for; by default "
             "`redis_server`, or the host a Sentinel names (or the Sentinel's own)"),
    Key("redis_tls_verify", COMMON, REDIS, Boolean(), "true", field="redis.tls_verify",
        help="verify the server's certificate and name. `false` accepts any server, and logs a "
             "warning at every start"),
    Key("timeout", COMMON, REDIS, Number(0), "10", field="redis.timeout", check=_finite_timeout,
        help="seconds: the deadline for connecting to Redis and for every reply. `0` (the old "
             "program's \"no timeout\") is accepted with a warning and replaced by the default, "
             "because a Redis that never answers would otherwise hold events forever"),
    Key("monitor_inactivitytimeout", COMMON, DAEMON, Number(), "300", field="inactivity_timeout",
        check=_zero_disables,
        help="seconds: the watchdog (see [the watchdog](design.md#the-watchdog-monitor_inactivitytimeout)). "
             "`<= 0` disables it"),
    Key("max_held_events", COMMON, DAEMON, Number(1, integer=True), "100000", field="max_held_events",
        help="how many events are held in memory while Redis is unreachable. Past it, see "
             "[the guarantee](design.md#the-delivery-guarantee)"),
)
#: Every key name, in table order (unknown keys are warned about).
KNOWN_KEYS = tuple(key.name for key in KEYS)
_BY_NAME = {key.name: key for key in KEYS}
_ACTIVE = _BY_NAME["active"]


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
    _only_match: Callable[[str], object] = dataclasses.field(init=False, repr=False, compare=False)
    _ignore_match: Callable[[str], object] = dataclasses.field(init=False, repr=False, compare=False)
    _ignore_directory: Callable[[str], object] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed once: accepts() runs for every file event.
        object.__setattr__(self, "_only_match", filters.any_match(self.only))
        object.__setattr__(self, "_ignore_match", filters.any_match(self.ignore))
        object.__setattr__(self, "_ignore_directory", filters.any_match(self.ignore_directories))

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
        """True when a sub-directory called C{name} belongs to the tree (C{ignore_directories})."""
        return not self._ignore_directory(name)


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    path: str
    sections: tuple[SectionSettings, ...]
    redis: RedisSettings
    inactivity_timeout: float
    max_held_events: int
    warnings: tuple[str, ...]


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


def _unknown_keys(parser: ExtendedConfigParser, warnings: dict[str, None]) -> None:
    """Warn about every key of every section (inactive ones too) not in L{KEYS}."""
    declared = parser.sections() + [DEFAULT_SECTION] * parser.has_section(DEFAULT_SECTION)
    for name in declared:
        for key in parser.keys(name):
            if key not in KNOWN_KEYS:
                close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                warnings[f"{parser.path}: [{name}] unknown key {key!r} ignored{hint}"] = None


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
    warnings: dict[str, None] = {}  # an ordered set: inherited warnings appear once
    _unknown_keys(parser, warnings)
    active = [name for name in parser.sections()
              if name != BASE_SECTION and _ACTIVE.read(SectionReader(parser, name, warnings))]
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
    with heap.bulk(text.count("\n[")):
        return parse(text, path, redis_optional=redis_optional)
