"""
Counts in log lines and health answers: "1 directory", "2 directories".
"""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """
    C{count} and the noun that agrees with it: C{plural(1, "event")} is
    C{"1 event"}, C{plural(2, "directory", "directories")} C{"2 directories"}.

    @param plural_form: when the plural is not C{singular + "s"}.
    """
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural_form if plural_form is not None else singular + 's'}"
