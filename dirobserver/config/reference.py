"""
The configuration reference: docs/configuration.md's tables of keys, made from
L{dirobserver.config.settings.KEYS}, so that the documentation cannot drift from
what the code reads (a test compares them).

C{python -m dirobserver.config.reference --reference} prints it;
C{python -m dirobserver.config.reference --write docs/configuration.md} rewrites the block
between L{README_BEGIN} and L{README_END} of that file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dirobserver.config.settings import GROUPS, KEYS

README_BEGIN, README_END = "<!-- keys:begin -->", "<!-- keys:end -->"


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md's table of keys), from L{KEYS}."""
    lines = ["<!-- generated from dirobserver/config/keys.py's KEYS: "
             "python -m dirobserver.config.reference --write docs/configuration.md -->",
             "",
             "Scope `section`: each section may set its own value. Scope `common`: one value for the "
             "whole daemon, on which all active sections must agree.",
             ""]
    for group in GROUPS:
        lines += [f"**{group.title}**: {group.about}.", "",
                  "| key | scope | kind | default | meaning |", "|---|---|---|---|---|"]
        lines += [f"| `{key.name}` | {key.scope} | {key.kind.describe()} | {key.default_markdown()} "
                  f"| {key.help} |" for key in KEYS if key.group is group]
        lines.append("")
    return "\n".join(lines)


def with_reference(document: str) -> str:
    """C{document} with the text between L{README_BEGIN} and L{README_END} regenerated.

    @raise ValueError: the markers are missing.
    """
    before, begin, rest = document.partition(README_BEGIN)
    _, end, after = rest.partition(README_END)
    if not (begin and end):
        raise ValueError(f"no {README_BEGIN} ... {README_END} block")
    # The blank line before the end marker ends the last table.
    return f"{before}{README_BEGIN}\n{reference_markdown()}\n{README_END}{after}"


def main(argv: Sequence[str]) -> int:
    """C{--reference}: print the reference; C{--write docs/configuration.md}: update that file."""
    if list(argv) == ["--reference"]:
        print(reference_markdown(), end="")
        return 0
    if len(argv) == 2 and argv[0] == "--write":
        with open(argv[1], encoding="utf-8") as stream:
            document = stream.read()
        try:
            updated = with_reference(document)
        except ValueError as exc:
            print(f"{argv[1]}: {exc}", file=sys.stderr)
            return 1
        if updated != document:
            with open(argv[1], "w", encoding="utf-8") as stream:
                stream.write(updated)
        return 0
    print("usage: python -m dirobserver.config.reference --reference | --write docs/configuration.md", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
