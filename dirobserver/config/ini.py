"""The generic INI layer: C{configparser_extended} semantics, no schema.

The original program used the C{configparser_extended} package, which is not
on the package index.  This module implements the parts of its documented
semantics that dirobserver's files use, on top of the standard library's
C{configparser.RawConfigParser}, which does the lexical work: no
interpolation (regular expressions contain C{%} and C{$}), case-insensitive
keys, case-sensitive section names, whole-line C{#}/C{;} comments and no
inline comments (C{;} separates list items).  On top of it:

  - C{[child:parent1:parent2]} declares section C{child} whose missing keys
    are looked up depth-first in C{parent1} (and its own parents), then
    C{parent2}, then the base section (C{[common]}), then C{[DEFAULT]}.

It knows nothing of the keys a program reads (see L{dirobserver.config.settings} for
those).  Every problem is a L{ConfigError} whose text is one line naming the
file (and the line or section).  Standard library only, so that the
configuration can be checked without Twisted.
"""

from __future__ import annotations

import configparser
import os
from typing import NoReturn

#: The section searched after every declared parent.  It is an ordinary
#: section otherwise: the program decides what it means.
BASE_SECTION = "common"
#: The lowest fallback of every lookup, when the file declares it.
DEFAULT_SECTION = "DEFAULT"
_MISSING = object()


class ConfigError(Exception):
    """A configuration problem, described in one line (file, section, key)."""

    def __init__(self, message: str) -> None:
        # Messages end up in one log line or one stderr line: never let a
        # stray newline (from a multi-line value, say) split them.
        super().__init__(" ".join(message.splitlines()))


def read_text(path: str) -> str:
    """The text of the UTF-8 file C{path} (a BOM is tolerated).

    @raise ConfigError: the file cannot be read or is not UTF-8; the message
        names the path as given (and the line of a bad byte).
    """
    if os.path.isdir(path):
        raise ConfigError(f"cannot read configuration file {path}: is a directory")
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")  # tolerate the BOM some editors add
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not valid UTF-8 (byte {data[exc.start]:#04x})") from None


class ExtendedConfigParser:
    """Section inheritance and lookups over one INI text.

    C{sections()} lists the declared names (without their C{:parent} part)
    in file order, including the base section but, like configparser, not
    C{[DEFAULT]}.

    @ivar path: names the text in error messages (it is never opened here).
    @ivar base: the base section searched after every section's parents.
    """

    def __init__(self, path: str = "<string>", base: str = BASE_SECTION) -> None:
        self.path = path
        self.base = base
        self._own: dict[str, dict[str, str]] = {}
        self._parents: dict[str, tuple[str, ...]] = {}
        self._lineage: dict[str, tuple[str, ...]] = {}
        #: per section: each key it sees -> the section that sets it (made
        #: at the first lookup: a program reads dozens of keys per section)
        self._origins: dict[str, dict[str, str]] = {}

    def read_string(self, text: str) -> None:
        """Parse C{text}; raise L{ConfigError} on any syntax problem."""
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
            found = text.split("\n")[lineno - 1].strip() if 0 < lineno <= text.count("\n") + 1 else "?"
            self._syntax(lineno, f"expected 'key = value', found {found!r}")
        except configparser.Error as exc:  # future configparser errors: still one line
            self._syntax(getattr(exc, "lineno", None), exc.message)
        header_lines = _header_lines(text)
        for header in raw.sections():
            name, *written = (part.strip() for part in header.split(":"))
            line = header_lines.get(header)
            if not name or not all(written):
                self._syntax(line, f"empty section name in [{header}]")
            if name in self._own:
                self._syntax(line, f"duplicate section [{name}]")
            if name == DEFAULT_SECTION and written:
                self._syntax(line, f"[{DEFAULT_SECTION}] cannot have parent sections")
            self._own[name] = {key: raw.get(header, key) for key in raw.options(header)}
            self._parents[name] = tuple(written)
        for name, parents in self._parents.items():
            for parent in parents:
                if parent not in self._own:
                    raise ConfigError(f"{self.path}: [{name}] unknown parent section [{parent}]")
        for name in self._own:
            self._lineage[name] = self._search_order(name)
        self._origins.clear()

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
        """True when C{section} (C{[DEFAULT]} included) is declared."""
        return section in self._own

    def _check(self, section: str) -> None:
        if section not in self._own:
            raise ConfigError(f"{self.path}: [{section}] no such section")

    def sections(self) -> list[str]:
        """Declared section names in file order (C{[DEFAULT]} excluded)."""
        return [name for name in self._own if name != DEFAULT_SECTION]

    def parents(self, section: str) -> tuple[str, ...]:
        """The parents written in the header of C{section}, in order."""
        self._check(section)
        return self._parents[section]

    def lineage(self, section: str) -> tuple[str, ...]:
        """Every section searched for keys of C{section}, in search order."""
        self._check(section)
        return self._lineage[section]

    def keys(self, section: str) -> list[str]:
        """Keys defined in C{section} itself (lower-case), in file order."""
        self._check(section)
        return list(self._own[section])

    def source(self, section: str, key: str) -> str | None:
        """Name of the section whose value C{get(section, key)} returns."""
        origins = self._origins.get(section)
        if origins is None:
            origins = self._origins[section] = {}
            for ancestor in reversed(self.lineage(section)):  # the nearest wins
                origins.update(dict.fromkeys(self._own[ancestor], ancestor))
        return origins.get(key.lower())

    def get(self, section: str, key: str, fallback: object = _MISSING) -> str:
        """The value of C{key} for C{section}, following inheritance.

        @raise ConfigError: the key is set nowhere and no C{fallback} is given.
        """
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
