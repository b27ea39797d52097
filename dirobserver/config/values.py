"""Kinds of values a configuration key can hold, and the one-line messages.

A kind turns the text of one key, as L{SectionReader} finds it through
section inheritance, into a Python value, or raises a L{ConfigError} that
names the file, the section being read, the key, and where an inherited
value really lives.  Each kind also describes itself in a few words for the
configuration reference (L{dirobserver.config.reference}).

The C{default} handed to C{read} is text, written as a user would write it
in the file, and parsed the same way; C{None} means the key is required.
Standard library only.
"""

from __future__ import annotations

import configparser
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from dirobserver.config import filters
from dirobserver.config.ini import ConfigError, ExtendedConfigParser

#: Words that mean "no value" for keys that accept none (counter, socket).
NULL_WORDS = ("", "null", "none")


class SectionReader:
    """Typed access to the (possibly inherited) values of one section.

    @ivar parser: the parsed file.
    @ivar section: the section being read; messages name it.
    @ivar warnings: an ordered set of warning lines (a dict with None values),
        shared by every reader of one file so that a warning about an
        inherited value is given once.
    """

    def __init__(self, parser: ExtendedConfigParser, section: str, warnings: dict[str, None]) -> None:
        self.parser, self.section, self.warnings = parser, section, warnings

    def fail(self, key: str, problem: str) -> ConfigError:
        """The error for C{key}: C{FILE: [SECTION] KEY: PROBLEM (inherited from [X])}."""
        origin = self.parser.source(self.section, key)
        # Name the section being read, but say where the bad value really
        # lives so the user edits the right line.
        where = f" (inherited from [{origin}])" if origin and origin != self.section else ""
        return ConfigError(f"{self.parser.path}: [{self.section}] {key}: {problem}{where}")

    def warn(self, key: str, message: str) -> None:
        """Record a warning about C{key}, naming the section that sets it."""
        origin = self.parser.source(self.section, key) or self.section
        self.warnings[f"{self.parser.path}: [{origin}] {key}: {message}"] = None

    def raw(self, key: str) -> str | None:
        """The text of C{key}, or None when it is set nowhere."""
        return self.parser.get(self.section, key, None)

    def value(self, key: str, nulls: tuple[str, ...] = ("",)) -> str | None:
        """The text, or None when absent or one of C{nulls} (case-insensitive)."""
        value = self.raw(key)
        return None if value is None or value.lower() in nulls else value

    def given(self, key: str, default: str | None, nulls: tuple[str, ...] = ("",)) -> str:
        """The text of C{key} (see L{value}), else C{default}; None: required."""
        value = self.value(key, nulls)
        if value is not None:
            return value
        if default is None:
            raise self.fail(key, "required in an active section")
        return default

    def path(self, value: str) -> str:
        """Expand C{~}; resolve a relative path against the file's directory."""
        base = os.path.dirname(os.path.abspath(self.parser.path))
        return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


@dataclass(frozen=True)
class Boolean:
    """C{true/false}, C{yes/no}, C{on/off}, C{1/0}, any case.  Empty is an error."""

    def describe(self) -> str:
        """A few words for the reference table."""
        return "boolean"

    def read(self, r: SectionReader, key: str, default: str | None) -> bool:
        """The value of C{key}, or C{default} (text) when it is set nowhere."""
        value = r.given(key, default, nulls=())
        try:
            return configparser.RawConfigParser.BOOLEAN_STATES[value.lower()]
        except KeyError:
            raise r.fail(key, f"{value!r} is not a boolean (use true/false, yes/no, on/off, 1/0)") from None


@dataclass(frozen=True)
class Number:
    """A finite float (or int) within C{[low, high]}; empty means the default.

    @ivar low: the smallest accepted value (C{-inf}: no bound).
    @ivar high: the largest accepted value, or None.
    @ivar integer: an integer is required (C{1.5} is an error).
    """

    low: float = -math.inf
    high: float | None = None
    integer: bool = False

    def describe(self) -> str:
        """A few words for the reference table, with the bounds."""
        kind = "integer" if self.integer else "number"
        if self.high is not None:
            return f"{kind}, {self.low} to {self.high}"
        return f"{kind} >= {self.low}" if self.low > -math.inf else kind

    def read(self, r: SectionReader, key: str, default: str | None) -> Any:
        """The value of C{key}; C{default} (text, C{""}: None) when empty or unset."""
        value = r.value(key)
        if value is None:
            if default is None:
                raise r.fail(key, "required in an active section")
            if not default:
                return None
            value = default
        kind = int if self.integer else float
        try:
            result = kind(value)
        except ValueError:
            result = math.nan
        if not math.isfinite(result):  # float() happily returns nan and inf
            raise r.fail(key, f"{value!r} is not {'an integer' if self.integer else 'a number'}")
        if result < self.low or (self.high is not None and result > self.high):
            bound = f"between {self.low} and {self.high}" if self.high is not None else f"at least {self.low}"
            raise r.fail(key, f"{value!r} must be {bound}")
        return result


@dataclass(frozen=True)
class Choice:
    """One word out of C{words}, any case; empty or unset means the default.

    @ivar words: the accepted words, in lower case, in the order the
        reference shows them.
    """

    words: tuple[str, ...]

    def describe(self) -> str:
        """A few words for the reference table: the choices."""
        return " or ".join(f"`{word}`" for word in self.words)

    def read(self, r: SectionReader, key: str, default: str | None) -> str:
        """The word C{key} is set to (lower case), or C{default}."""
        value = r.given(key, default)
        word = value.lower()
        if word not in self.words:
            raise r.fail(key, f"{value!r} is not one of {', '.join(self.words)}")
        return self.words[self.words.index(word)]  # one string, not one per section


@dataclass(frozen=True)
class Words:
    """A C{;}-separated set of words out of C{words}, any case, kept in the
    order of C{words} (so that C{size;id} and C{id;size} mean the same);
    empty or unset means the default.
    """

    words: tuple[str, ...]

    def describe(self) -> str:
        """A few words for the reference table: the choices."""
        return "list (`;`) of " + ", ".join(f"`{word}`" for word in self.words)

    def read(self, r: SectionReader, key: str, default: str | None) -> tuple[str, ...]:
        """The words C{key} names, in the order of L{words}."""
        value = r.raw(key)
        if value is None:
            value = default or ""
        given = [item.strip().lower() for item in value.split(";") if item.strip()]
        for word in given:
            if word not in self.words:
                raise r.fail(key, f"{word!r} is not one of {', '.join(self.words)}")
        return tuple(word for word in self.words if word in given)


@dataclass(frozen=True)
class Text:
    """A string; absent or one of C{nulls} means the default.

    @ivar nulls: words meaning "no value" (case-insensitive).
    """

    nulls: tuple[str, ...] = ("",)

    def describe(self) -> str:
        """A few words for the reference table."""
        return "text"

    def read(self, r: SectionReader, key: str, default: str | None) -> str | None:
        """The value of C{key}, or C{default} (a null word: None)."""
        value = r.value(key, self.nulls)
        if value is not None:
            return value
        if default is None:
            raise r.fail(key, "required in an active section")
        return None if default.lower() in self.nulls else default


@dataclass(frozen=True)
class Path(Text):
    """A L{Text} naming a file: C{~} expanded, relative to the file's directory."""

    def describe(self) -> str:
        """A few words for the reference table."""
        return "path"

    def read(self, r: SectionReader, key: str, default: str | None) -> str | None:
        """The absolute, normalized path, or None."""
        value = super().read(r, key, default)
        return None if value is None else r.path(value)


@dataclass(frozen=True)
class Patterns:
    """A C{;}-separated list of regular expressions (see L{filters}).

    Items are stripped and empty items dropped; an empty value is an empty
    list, while an unset key means the default.
    """

    def describe(self) -> str:
        """A few words for the reference table."""
        return "regex list (`;`)"

    def read(self, r: SectionReader, key: str, default: str | None) -> tuple[re.Pattern[str], ...]:
        """The compiled patterns, in order."""
        value = r.raw(key)
        if value is None:
            value = default or ""
        try:
            return filters.compile_patterns(item for item in map(str.strip, value.split(";")) if item)
        except re.error as exc:
            raise r.fail(key, f"invalid regular expression {exc.pattern!r}: {exc}") from None


@dataclass(frozen=True)
class Addresses:
    """A C{;}-separated list of C{host:port} (C{[v6]:port} for IPv6 literals).

    Items are stripped and empty items dropped; unset or empty is the empty
    tuple.
    """

    def describe(self) -> str:
        """A few words for the reference table."""
        return "`host:port` list (`;`)"

    def read(self, r: SectionReader, key: str, default: str | None) -> tuple[tuple[str, int], ...]:
        """The C{(host, port)} pairs, in order."""
        value = r.raw(key)
        if value is None:
            value = default or ""
        return tuple(self._address(r, key, item) for item in map(str.strip, value.split(";")) if item)

    @staticmethod
    def _address(r: SectionReader, key: str, item: str) -> tuple[str, int]:
        host, colon, port = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not (colon and host and port.isdigit() and 1 <= int(port) <= 65535):
            raise r.fail(key, f"{item!r} is not host:port (a port from 1 to 65535)")
        return host, int(port)
