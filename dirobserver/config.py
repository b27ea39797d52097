"""Read ``directory_observer.ini`` into frozen, validated settings.

The syntax follows the documented semantics of ``configparser_extended``:
the stdlib :class:`configparser.RawConfigParser` does the lexical work (no
interpolation, because regular expressions contain ``%`` and ``$``; keys are
case-insensitive, section names are not; whole-line ``#``/``;`` comments and
no inline comments, since ``;`` separates list items).  On top of it:

* ``[child:parent1:parent2]`` declares section ``child`` whose missing keys
  are looked up depth-first in ``parent1`` (and its own parents), then
  ``parent2``, then the base section ``[common]``, then ``[DEFAULT]``;
* ``ignore`` and ``only`` are ``;``-separated lists.

Every problem is reported as a :class:`ConfigError` whose text is one line
naming the file, the section and the key.
"""

import configparser
import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

BASE_SECTION = "common"
DEFAULT_SECTION = "DEFAULT"
WORKING_PATTERN = r"^.*\.working$"
ACCEPT_ALL_PATTERN = r"^.*$"
#: File names are matched with DOTALL: a name may contain a newline, and
#: ``^.*$`` (the default ``only``) must still accept it.
_FLAGS = re.DOTALL
DEFAULT_TIMEOUT = 10.0
_NULL_WORDS = ("", "null", "none")
KNOWN_KEYS = (
    "active", "directory", "queue", "counter", "forced_poll", "poll_queue_limit",
    "monitor_inactivitytimeout", "redis_server", "redis_port", "redis_unix_socket",
    "redis_password", "redis_db", "timeout", "ignore", "only", "subdirectories",
    "max_held_events",
)
_MISSING = object()


class ConfigError(Exception):
    """A configuration problem, described in one line (file, section, key)."""

    def __init__(self, message: str) -> None:
        # Messages end up in one log line or one stderr line: never let a
        # stray newline (from a multi-line value, say) split them.
        super().__init__(" ".join(message.splitlines()))


class ExtendedConfigParser:
    """The generic ``configparser_extended`` layer: inheritance and lookups.

    ``path`` is only used in error messages.  ``sections()`` lists the
    declared names (without their ``:parent`` part) in file order, including
    the base section but, like configparser, not ``[DEFAULT]``.
    """

    def __init__(self, path: str = "<string>", base: str = BASE_SECTION) -> None:
        self.path = path
        self.base = base
        self._own: dict[str, dict[str, str]] = {}
        self._parents: dict[str, tuple[str, ...]] = {}
        self._lineage: dict[str, tuple[str, ...]] = {}

    def read_string(self, text: str) -> None:
        """Parse ``text``; raise :class:`ConfigError` on any syntax problem."""
        raw = configparser.RawConfigParser(
            comment_prefixes=("#", ";"), inline_comment_prefixes=None, strict=True,
            # An impossible name, so that [DEFAULT] stays an ordinary section
            # and configparser does not merge it into every lookup behind our
            # back: we put it last in the search order ourselves.
            default_section="\0no default section")
        try:
            raw.read_string(text, source=self.path)
        except configparser.MissingSectionHeaderError as exc:
            self._syntax(exc.lineno, f"text before the first section header: {exc.line.strip()!r}")
        except configparser.DuplicateSectionError as exc:
            self._syntax(exc.lineno, f"duplicate section [{exc.section}]")
        except configparser.DuplicateOptionError as exc:
            self._syntax(exc.lineno, f"[{exc.section}] duplicate key {exc.option!r}")
        except configparser.ParsingError as exc:
            lineno = exc.errors[0][0]  # errors hold repr()s: quote the real line instead
            line = text.split("\n")[lineno - 1].strip() if 0 < lineno <= text.count("\n") + 1 else "?"
            self._syntax(lineno, f"expected 'key = value', found {line!r}")
        except configparser.Error as exc:  # future configparser errors: still one line
            self._syntax(getattr(exc, "lineno", None), exc.message)
        header_lines = _header_lines(text)
        for header in raw.sections():
            name, *parents = (part.strip() for part in header.split(":"))
            line = header_lines.get(header)
            if not name or not all(parents):
                self._syntax(line, f"empty section name in [{header}]")
            if name in self._own:
                self._syntax(line, f"duplicate section [{name}]")
            if name == DEFAULT_SECTION and parents:
                self._syntax(line, f"[{DEFAULT_SECTION}] cannot have parent sections")
            self._own[name] = {key: raw.get(header, key) for key in raw.options(header)}
            self._parents[name] = tuple(parents)
        for name, parents in self._parents.items():
            for parent in parents:
                if parent not in self._own:
                    raise ConfigError(f"{self.path}: [{name}] unknown parent section [{parent}]")
        for name in self._own:
            self._lineage[name] = self._search_order(name)

    def _syntax(self, lineno: int | None, detail: str) -> NoReturn:
        where = f" line {lineno}:" if lineno else ""
        raise ConfigError(f"{self.path}:{where} syntax error: {detail}")

    def _depth_first(self, name: str, chain: tuple[str, ...]) -> list[str]:
        if name in chain:
            cycle = " -> ".join((*chain[chain.index(name):], name))
            raise ConfigError(f"{self.path}: [{name}] inheritance cycle: {cycle}")
        order = [name]
        for parent in self._parents[name]:
            # A diamond (two parents sharing an ancestor) visits it once, at
            # its first, highest-priority place.
            order += [s for s in self._depth_first(parent, chain + (name,)) if s not in order]
        return order

    def _search_order(self, name: str) -> tuple[str, ...]:
        order = self._depth_first(name, ())
        for fallback in (self.base, DEFAULT_SECTION):
            if fallback in self._own:
                order += [s for s in self._depth_first(fallback, ()) if s not in order]
        return tuple(order)

    def has_section(self, section: str) -> bool:
        """True when ``section`` (``[DEFAULT]`` included) is declared."""
        return section in self._own

    def _check(self, section: str) -> None:
        if section not in self._own:
            raise ConfigError(f"{self.path}: [{section}] no such section")

    def sections(self) -> list[str]:
        """Declared section names in file order (``[DEFAULT]`` excluded)."""
        return [name for name in self._own if name != DEFAULT_SECTION]

    def parents(self, section: str) -> tuple[str, ...]:
        """The parents written in the header of ``section``, in order."""
        self._check(section)
        return self._parents[section]

    def lineage(self, section: str) -> tuple[str, ...]:
        """Every section searched for keys of ``section``, in search order."""
        self._check(section)
        return self._lineage[section]

    def keys(self, section: str) -> list[str]:
        """Keys defined in ``section`` itself (lower-case), in file order."""
        self._check(section)
        return list(self._own[section])

    def source(self, section: str, key: str) -> str | None:
        """Name of the section whose value ``get(section, key)`` returns."""
        key = key.lower()
        return next((s for s in self.lineage(section) if key in self._own[s]), None)

    def get(self, section: str, key: str, fallback: object = _MISSING) -> str:
        """The value of ``key`` for ``section``, following inheritance."""
        origin = self.source(section, key)
        if origin is not None:
            return self._own[origin][key.lower()]
        if fallback is _MISSING:
            raise ConfigError(f"{self.path}: [{section}] {key}: not set")
        return fallback  # type: ignore[return-value]


def _header_lines(text: str) -> dict[str, int]:
    """Map each raw section header to its line number, for error messages."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        match = configparser.RawConfigParser.SECTCRE.match(line.strip())
        if match:
            lines.setdefault(match.group("header"), number)
    return lines


#: ``^.*SUFFIX$`` with a literal suffix (the shape of the ``.working`` rule).
_SUFFIX_RULE = re.compile(r"\^\.\*((?:\\[^A-Za-z0-9]|[^\\.^$*+?{}\[\]|()])+)\$")


def _suffix_of(pattern: re.Pattern[str]) -> str | None:
    """The literal suffix of a ``^.*SUFFIX$`` pattern, else None."""
    if not pattern.flags & re.DOTALL:
        return None  # without DOTALL, `.*` stops at a newline
    m = _SUFFIX_RULE.fullmatch(pattern.pattern)
    return re.sub(r"\\(.)", r"\1", m.group(1)) if m else None


def _any_match(patterns: tuple[re.Pattern[str], ...]) -> Callable[[str], object]:
    """A fast callable telling whether some pattern ``.match()``-es a name."""
    if not patterns:
        return lambda name: False
    if any(p.pattern == ACCEPT_ALL_PATTERN and p.flags & re.DOTALL for p in patterns):
        # ^.*$ with DOTALL matches every name: skip the regex engine.
        return lambda name: True
    suffixes = [_suffix_of(p) for p in patterns]
    if all(suffix is not None for suffix in suffixes):
        # ^.*\.working$ is a suffix test; the regex engine would scan the
        # whole name and backtrack.  `$` also matches before a final newline.
        ends = tuple(suffixes) + tuple(f"{suffix}\n" for suffix in suffixes)
        return lambda name: name.endswith(ends)
    if len(patterns) == 1:
        return patterns[0].match
    plain = re.compile("", _FLAGS).flags
    # One alternation is a single C-level scan instead of one per pattern.  It
    # is equivalent only without groups (back-references would be renumbered)
    # and without global inline flags such as (?i) (they would spread).
    if all(p.groups == 0 and p.flags == plain for p in patterns):
        try:
            return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), _FLAGS).match
        except re.error:
            pass
    matchers = tuple(p.match for p in patterns)
    return lambda name: any(m(name) for m in matchers)


@dataclass(frozen=True)
class RedisSettings:
    """The one Redis server shared by all active sections."""

    host: str | None
    port: int | None
    unix_socket: str | None
    password: str | None
    db: int | None
    timeout: float

    def describe(self) -> str:
        """``host:port`` or ``unix:/path`` for log lines (never the password)."""
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
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
    _only_match: Callable[[str], object] = field(init=False, repr=False, compare=False)
    _ignore_match: Callable[[str], object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed once: accepts() runs for every file event.
        object.__setattr__(self, "_only_match", _any_match(self.only))
        object.__setattr__(self, "_ignore_match", _any_match(self.ignore))

    def accepts(self, name: str) -> bool:
        """True when ``name`` matches some ``only`` and no ``ignore`` pattern."""
        return bool(self._only_match(name)) and not self._ignore_match(name)


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    path: str
    sections: tuple[SectionSettings, ...]
    redis: RedisSettings
    inactivity_timeout: float
    max_held_events: int
    warnings: tuple[str, ...]


class _Reader:
    """Typed access to one section's (possibly inherited) values."""

    def __init__(self, parser: ExtendedConfigParser, section: str, warnings: dict[str, None]) -> None:
        self.parser, self.section, self.warnings = parser, section, warnings

    def fail(self, key: str, problem: str) -> ConfigError:
        origin = self.parser.source(self.section, key)
        # Name the active section, as the spec asks, but say where the bad
        # value really lives so the user edits the right line.
        where = f" (inherited from [{origin}])" if origin and origin != self.section else ""
        return ConfigError(f"{self.parser.path}: [{self.section}] {key}: {problem}{where}")

    def warn(self, key: str, message: str) -> None:
        origin = self.parser.source(self.section, key) or self.section
        self.warnings[f"{self.parser.path}: [{origin}] {key}: {message}"] = None

    def value(self, key: str, nulls: tuple[str, ...] = ("",)) -> str | None:
        """The value, or None when absent or one of ``nulls`` (case-insensitive)."""
        value = self.parser.get(self.section, key, None)
        return None if value is None or value.lower() in nulls else value

    def required(self, key: str) -> str:
        value = self.value(key)
        if value is None:
            raise self.fail(key, "required in an active section")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.parser.get(self.section, key, None)
        if value is None:
            return default
        try:
            return configparser.RawConfigParser.BOOLEAN_STATES[value.lower()]
        except KeyError:
            raise self.fail(key, f"{value!r} is not a boolean (use true/false, yes/no, on/off, 1/0)") from None

    def number(self, key: str, default: Any, low: float, high: int | None = None, kind: type = float) -> Any:
        """A ``kind`` (float or int) within bounds; empty means ``default``."""
        value = self.value(key)
        if value is None:
            return default
        try:
            result = kind(value)
        except ValueError:
            result = math.nan
        if not math.isfinite(result):  # float() happily returns nan and inf
            raise self.fail(key, f"{value!r} is not {'an integer' if kind is int else 'a number'}")
        if result < low or (high is not None and result > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.fail(key, f"{value!r} must be {bound}")
        return result

    def patterns(self, key: str, default: str) -> tuple[re.Pattern[str], ...]:
        value = self.parser.get(self.section, key, default)
        result = []
        for item in (part.strip() for part in value.split(";")):
            if item:
                try:
                    result.append(re.compile(item, _FLAGS))
                except re.error as exc:
                    raise self.fail(key, f"invalid regular expression {item!r}: {exc}") from None
        return tuple(result)

    def path(self, value: str) -> str:
        """Expand ``~`` and resolve relative paths against the config file's directory."""
        base = os.path.dirname(os.path.abspath(self.parser.path))
        return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


def _section(r: _Reader) -> SectionSettings:
    ignore = r.patterns("ignore", "")
    if WORKING_PATTERN not in [p.pattern for p in ignore]:
        ignore += (re.compile(WORKING_PATTERN, _FLAGS),)  # half-written files are never announced
    only = r.patterns("only", ACCEPT_ALL_PATTERN)
    if not only:
        raise r.fail("only", "empty list would skip every file (remove the key to accept all names)")
    return SectionSettings(
        name=r.section, directory=r.path(r.required("directory")),
        queue=r.required("queue"), counter=r.value("counter", _NULL_WORDS),
        forced_poll=r.number("forced_poll", 0.0, 0),
        poll_queue_limit=r.number("poll_queue_limit", 10000, 0, kind=int),
        ignore=ignore, only=only, subdirectories=r.boolean("subdirectories", False))


def _redis(r: _Reader, redis_optional: bool) -> RedisSettings:
    socket = r.value("redis_unix_socket", _NULL_WORDS)
    host, port = r.value("redis_server"), r.number("redis_port", None, 1, 65535, kind=int)
    timeout = r.number("timeout", DEFAULT_TIMEOUT, 0)
    if timeout == 0:
        # The old program read 0 as "wait forever"; with held events that
        # would silently stall the whole pipeline, so we refuse to wait forever.
        r.warn("timeout", "0 (no timeout) is not supported: a Redis that never answers would "
               f"hold events forever; using {DEFAULT_TIMEOUT:g} seconds")
        timeout = DEFAULT_TIMEOUT
    if socket:
        if host or port:
            r.warn("redis_unix_socket", "set, so redis_server and redis_port are ignored")
        socket, host, port = r.path(socket), None, None
    else:
        if host is None:
            host = "127.0.0.1" if redis_optional else r.required("redis_server")
        if port is None:
            if not redis_optional:
                raise r.fail("redis_port", "required in an active section (or set redis_unix_socket)")
            port = 6379
    return RedisSettings(host=host, port=port, unix_socket=socket, password=r.value("redis_password"),
                         db=r.number("redis_db", None, 0, kind=int), timeout=timeout)


# Settings that exist once per daemon, so every active section must agree.
_SHARED = (("unix_socket", "redis_unix_socket"), ("host", "redis_server"), ("port", "redis_port"),
           ("password", "redis_password"), ("db", "redis_db"), ("timeout", "timeout"),
           ("inactivity_timeout", "monitor_inactivitytimeout"), ("max_held_events", "max_held_events"))


def _show(value: object) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def parse(text: str, path: str, *, redis_optional: bool = False) -> Settings:
    """Validate the configuration ``text``; ``path`` names it in messages.

    Relative ``directory`` (and ``redis_unix_socket``) values are resolved
    against the directory containing ``path``.  With ``redis_optional``
    (embedded Redis), ``redis_server``/``redis_port`` default to
    127.0.0.1:6379.  Raises :class:`ConfigError` only.
    """
    parser = ExtendedConfigParser(path)
    parser.read_string(text)
    warnings: dict[str, None] = {}  # an ordered set: inherited warnings appear once
    declared = parser.sections() + [DEFAULT_SECTION] * parser.has_section(DEFAULT_SECTION)
    for name in declared:
        for key in parser.keys(name):
            if key not in KNOWN_KEYS:
                close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                warnings[f"{path}: [{name}] unknown key {key!r} ignored{hint}"] = None
    active = [name for name in parser.sections() if name != BASE_SECTION
              and _Reader(parser, name, warnings).boolean("active", False)]
    if not active:
        raise ConfigError(f"{path}: no active section (set active=true in at least one section)")
    sections, shared = [], []
    for name in active:
        r = _Reader(parser, name, warnings)
        sections.append(_section(r))
        redis = _redis(r, redis_optional)
        inactivity = r.number("monitor_inactivitytimeout", 300.0, -math.inf)
        shared.append((name, redis, {  # everything here must be equal in all active sections
            **dataclasses.asdict(redis), "inactivity_timeout": inactivity if inactivity > 0 else 0.0,
            "max_held_events": r.number("max_held_events", 100000, 1, kind=int)}))
    first_name, redis, first = shared[0]
    for name, _, values in shared[1:]:
        for attr, key in _SHARED:
            if values[attr] != first[attr]:
                shown = "values not shown" if attr == "password" else \
                    f"{_show(first[attr])} and {_show(values[attr])}"
                why = "use one Redis server" if key.startswith("redis") or key == "timeout" else "share one value"
                raise ConfigError(f"{path}: [{first_name}] and [{name}] disagree on {key} ({shown}): "
                                  f"all active sections must {why}")
    seen: dict[str, str] = {}
    for section in sections:
        if section.directory in seen:
            warnings[f"{path}: [{seen[section.directory]}] and [{section.name}] both watch "
                     f"{section.directory}"] = None
        seen.setdefault(section.directory, section.name)
    return Settings(path=path, sections=tuple(sections), redis=redis,
                    inactivity_timeout=first["inactivity_timeout"],
                    max_held_events=first["max_held_events"], warnings=tuple(warnings))


def load(path: str, *, redis_optional: bool = False) -> Settings:
    """Read the UTF-8 file ``path`` and :func:`parse` it; raises ConfigError only."""
    if os.path.isdir(path):
        raise ConfigError(f"cannot read configuration file {path}: is a directory")
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some editors add
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not valid UTF-8 (byte {data[exc.start]:#04x})") from None
    return parse(text, path, redis_optional=redis_optional)
