"""The table of keys: every configuration key, described once.

L{KEYS} is the table: for each key its name, its scope, its concern group,
its kind (how its text is parsed and bounded, see L{dirobserver.config.values}),
its default, one line of help, and the settings field it fills.  Everything
else is derived from it in L{dirobserver.config.settings} (validation, the
unknown-key hint, the rule that sections agree on keys of scope L{COMMON})
and in L{dirobserver.config.reference} (docs/configuration.md).

A new key is one row of L{KEYS} plus the field its C{field} names.
Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dirobserver.config import filters
from dirobserver.config.redis_settings import EMBEDDED_HOST, EMBEDDED_PORT
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
    Words,
)

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
#: C{watch_mode}: one fanotify filesystem mark (CAP_SYS_ADMIN, Linux 5.9).
WATCH_FANOTIFY = "fanotify"
WATCH_MODES = (WATCH_AUTO, WATCH_INOTIFY, WATCH_POLL, WATCH_FANOTIFY)
#: C{extra_fields}: what an event can say of its file beyond the four keys.
EXTRA_FIELDS = ("id", "size", "mtime")
#: The default record of C{announce_once}: the queue's name and this.
ANNOUNCED_SUFFIX = ":announced"
#: The shortest and longest C{poll_interval}, in seconds.
MIN_POLL_INTERVAL, MAX_POLL_INTERVAL = 0.1, 3600

Kind = Boolean | Number | Text | Path | Patterns | Choice | Addresses | Words


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
             "`fanotify`: one fanotify filesystem mark for the whole tree instead of a watch per "
             "directory (root or CAP_SYS_ADMIN, Linux 5.9 or later); "
             "`auto`: `poll` on network and FUSE filesystems (NFS, CIFS/SMB, 9p, Ceph, FUSE...), where "
             "inotify does not see what other hosts write, else `fanotify` for a `recursive` section "
             "when it can be had, else `inotify`. See "
             "[Network filesystems](design.md#network-filesystems-watch_mode-and-poll_interval) and "
             "[fanotify](design.md#fanotify-watch_mode--fanotify)"),
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
    Key("announce_once", SECTION, OUTPUT, Boolean(), "false", field="announce_once",
        help="`true`: a listing (start-up, forced poll, catch-up) announces a file only if it was never "
             "announced (same name, same inode), or last announced more than `reannounce_after` ago; "
             "a record of what was announced is kept in Redis (`announced`). `false`: every listing "
             "announces every file present. See [Announcing once](design.md#announcing-once-announce_once)"),
    Key("reannounce_after", SECTION, OUTPUT, Number(0), "0", field="reannounce_after",
        help="with `announce_once`: seconds after which a file still present is announced again "
             "(as `exists`, with the same `id`) by the next listing. `0`: never"),
    Key("announced", SECTION, OUTPUT, Text(), "", field="announced",
        shown_default="`queue` + `:announced`",
        help="with `announce_once`: the Redis hash that records what was announced (one field per file: "
             "its path relative to `directory`), written in the same `MULTI/EXEC` as the events; "
             "about 84 bytes of Redis memory per file present (`burst-once` in docs/performance.md)"),
    Key("extra_fields", SECTION, OUTPUT, Words(EXTRA_FIELDS), "", field="extra_fields",
        help="event fields beyond the four: `id` (the same string in every announcement of one file: "
             "same path, same inode), `size` (bytes), `mtime` (seconds since the epoch), read when the "
             "event is made. None by default: the event keeps exactly its four keys"),
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
    Key("redis_wait_replicas", COMMON, REDIS, Number(0, integer=True), "0", field="redis.wait_replicas",
        help="after each round of events, `WAIT` until this many replicas have it (at most "
             "`redis_wait_timeout`) before the next round, so that a failover loses at most the last "
             "round, not everything the replica lagged behind. `0`: no wait. See "
             "[Waiting for replicas](operations.md#waiting-for-replicas-redis_wait_replicas)"),
    Key("redis_wait_timeout", COMMON, REDIS, Number(0.001), "1", field="redis.wait_timeout",
        help="seconds: the longest a round waits for `redis_wait_replicas` (shorter than `timeout`); "
             "past it the events are delivered all the same, and the next round waits again"),
    Key("monitor_inactivitytimeout", COMMON, DAEMON, Number(), "300", field="inactivity_timeout",
        check=_zero_disables,
        help="seconds: the watchdog (see [the watchdog](design.md#the-watchdog-monitor_inactivitytimeout)). "
             "`<= 0` disables it"),
    Key("linger", COMMON, DAEMON, Number(0, 1), "0.005", field="linger",
        help="seconds: the longest a new event may be held to be sent with the ones that follow "
             "(one wake-up, one read, one Redis round for all); a larger value costs latency and "
             "saves CPU at steady rates, `0` sends each event as it comes. See "
             "[Linger](performance.md#linger-latency-for-cpu)"),
    Key("max_held_events", COMMON, DAEMON, Number(1, integer=True), "100000", field="max_held_events",
        help="how many events are held in memory while Redis is unreachable. Past it, see "
             "[the guarantee](design.md#the-delivery-guarantee)"),
)
#: Every key name, in table order (any other key is a configuration error).
KNOWN_KEYS = tuple(key.name for key in KEYS)
_BY_NAME = {key.name: key for key in KEYS}
#: The key read first: whether a section is watched at all.
ACTIVE = _BY_NAME["active"]
