"""File-name filters: regular expressions, and fast paths for common shapes.

Names are matched with C{re.match} (anchored at the start only) and with
C{DOTALL}, because a file name may contain a newline and C{^.*$} must still
accept it.  A filter runs for every file event, so L{any_match} turns a
tuple of patterns into the cheapest callable that gives the same answers:

  - C{^.*$} accepts every name: no regex engine at all;
  - C{^.*SUFFIX$} with a literal suffix (the shape of the C{.working} rule) is
    a C{str.endswith} test, where the engine would scan the whole name and
    backtrack;
  - several plain patterns become one alternation: one C-level scan instead
    of one per pattern.

Standard library only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

#: The flags every filter pattern is compiled with.
FLAGS = re.DOTALL
#: The pattern that accepts every name (with L{FLAGS}).
ACCEPT_ALL = r"^.*$"

#: C{^.*SUFFIX$} with a literal suffix (the shape of the C{.working} rule).
_SUFFIX_RULE = re.compile(r"\^\.\*((?:\\[^A-Za-z0-9]|[^\\.^$*+?{}\[\]|()])+)\$")


def compile_patterns(items: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Compile each of C{items} with L{FLAGS}, in order.

    @raise re.error: for the first invalid item; its C{pattern} attribute is
        that item, so the caller can quote it.
    """
    return _compiled(tuple(items))


# Thousands of sections mostly share their filters (inherited from [common]):
# one tuple of patterns and one matcher for them all, not one per section
# (7 MB for 10,000 sections).  Both are pure functions of their argument.
@functools.lru_cache(maxsize=1024)
def _compiled(items: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(item, FLAGS) for item in items)


def _suffix_of(pattern: re.Pattern[str]) -> str | None:
    """The literal suffix of a C{^.*SUFFIX$} pattern, else None."""
    if not pattern.flags & re.DOTALL:
        return None  # without DOTALL, `.*` stops at a newline
    m = _SUFFIX_RULE.fullmatch(pattern.pattern)
    return re.sub(r"\\(.)", r"\1", m.group(1)) if m else None


@functools.lru_cache(maxsize=1024)
def any_match(patterns: tuple[re.Pattern[str], ...]) -> Callable[[str], object]:
    """A fast callable telling whether some pattern C{.match()}-es a name.

    @param patterns: compiled patterns (any flags; the fast paths apply only
        where they give the regex engine's answer).
    @return: a callable whose result is truthy exactly when
        C{any(p.match(name) for p in patterns)} is.
    """
    if not patterns:
        return lambda name: False
    if any(p.pattern == ACCEPT_ALL and p.flags & re.DOTALL for p in patterns):
        return lambda name: True
    suffixes = [suffix for suffix in map(_suffix_of, patterns) if suffix is not None]
    if len(suffixes) == len(patterns):
        # `$` also matches before a final newline.
        ends = tuple(suffixes) + tuple(f"{suffix}\n" for suffix in suffixes)
        return lambda name: name.endswith(ends)
    if len(patterns) == 1:
        return patterns[0].match
    plain = re.compile("", FLAGS).flags
    # One alternation is equivalent only without groups (back-references
    # would be renumbered) and without global inline flags such as (?i)
    # (they would spread to the other patterns).
    if all(p.groups == 0 and p.flags == plain for p in patterns):
        try:
            return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), FLAGS).match
        except re.error:
            pass
    matchers = tuple(p.match for p in patterns)
    return lambda name: any(m(name) for m in matchers)
