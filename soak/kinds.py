"""
The soak's section kinds and the observer's configuration.

Each row of L{KINDS} is one mode of the observer: the configuration keys of
its section, how its files are produced (L{SectionKind.styles}, weights of
the producer's ways of writing a file, see L{soak.producer}), how its
queue is read (a list by C{BRPOP}/C{RPOP}, a stream by C{XREADGROUP}/
C{XACK}), and what the checker demands of it (C{early}: an event before the
file is complete is an error, for live events or all; C{grace_keys}: keys whose seconds lengthen the
grace period).  A kind whose C{needs} are not all keys of
L{dirobserver.config.settings.KNOWN_KEYS} is left out, so the soak grows by itself as
features land: adding a mode is one row here.

L{ObserverConfig} writes the INI file (atomically: a restarted observer never
reads half a file), with the variants the reload faults switch between.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: How a kind's queue is read.
LIST, STREAM = "list", "stream"
#: Which events of a kind must not come before its files are complete.
NONE, LIVE, ALL = "", "created", "all"

#: The producer's ways of making a file (see L{soak.producer.Producer}).
STYLES = ("quick", "odd", "slow", "staged", "abandoned", "ignored", "entry", "nested", "moved")

#: Seconds of every grace period: a file must have been present and complete
#: this long (plus the kind's C{grace_keys}), outside fault windows, to be due.
BASE_GRACE = 3.0


@dataclass(frozen=True)
class SectionKind:
    """
    One mode of the observer, as the soak exercises it.

    @ivar keys: its section's configuration keys (besides C{active},
        C{directory} and C{queue}); C{{name}} in a value is the section name.
    @ivar styles: weights of the ways its files are produced.
    @ivar rate: files per second its producer makes at the normal pace.
    @ivar needs: configuration keys that must exist for it to run.
    @ivar optional: keys of C{keys} written only when the observer knows them.
    @ivar reader: L{LIST} or L{STREAM}.
    @ivar early: which events must not be stamped before the producer
        finished the file (its close, or its rename into place; with
        C{settle} in C{keys}, C{settle} seconds after that): L{NONE}, L{LIVE}
        (C{"created"} events only: with C{announce = closed} and no settle
        a listing cannot see a close, as documented) or L{ALL}.
    @ivar grace_keys: keys (of C{keys}) whose seconds add to L{BASE_GRACE}.
    @ivar keep: the share of processed files consumers never delete.
    @ivar staging: C{"working"} (C{NAME.working}, always ignored) or
        C{"hidden"} (C{.NAME.part}, which the section must ignore) for files
        written under another name and renamed into place.
    @ivar kernel_queue: its events come from a kernel queue, inotify's or
        fanotify's (a burst while the observer is stopped overflows it).
    @ivar depth: the deepest sub-directory its C{nested} and C{moved} files
        go to (1: a sub-directory of its directory).
    @ivar once: C{announce_once} is on: its duplicates are judged
        (L{soak.once}), not only counted.
    @ivar fanotify: it needs a fanotify filesystem mark, which the soak
        probes before it runs (root, Linux 5.9, a filesystem with file
        handles): see L{unavailable}.
    @ivar worker: a real C{dirobserver-worker} consumes it (L{soak.working})
        instead of a consumer; it then takes no fault's burst (a worker runs
        a process per file: tens of thousands would outlast the run) and no
        directory fault (its checks do not yet discount the files deleted
        with their directory: see docs/soak.md).
    """

    name: str
    keys: Mapping[str, str]
    styles: Mapping[str, float]
    rate: float
    needs: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    reader: str = LIST
    early: str = ""
    grace_keys: tuple[str, ...] = ()
    keep: float = 0.02
    staging: str = "working"
    kernel_queue: bool = True
    worker: bool = False
    depth: int = 1
    once: bool = False
    fanotify: bool = False

    def available(self, known: Sequence[str]) -> bool:
        """Whether the observer knows every key this kind needs (and has the worker, if it needs it)."""
        return all(key in known for key in self.needs) and (not self.worker or _has_worker())

    def grace(self) -> float:
        """Seconds a file must be present and complete before it is due."""
        return BASE_GRACE + sum(float(self.keys[key]) for key in self.grace_keys)

    def settle(self) -> float:
        """The C{settle} seconds an announcement must wait (0: none)."""
        return float(self.keys.get("settle", 0))


KINDS: tuple[SectionKind, ...] = (
    SectionKind("created", {}, {"quick": 50, "odd": 5, "slow": 15, "staged": 20, "abandoned": 10}, rate=60),
    SectionKind("poll", {"forced_poll": "3", "poll_queue_limit": "3000"},
                {"quick": 70, "staged": 20, "abandoned": 10}, rate=30, keep=0.005),
    SectionKind("filters", {"ignore": r"^\..*;^skip-.*", "only": "^f;^d", "subdirectories": "true"},
                {"quick": 45, "odd": 5, "staged": 20, "ignored": 20, "entry": 5, "abandoned": 5},
                rate=40, staging="hidden"),
    SectionKind("counter", {"counter": "soak:count:{name}"},
                {"quick": 80, "slow": 10, "abandoned": 10}, rate=50),
    # Complete files (announce = closed, settle).
    SectionKind("closed", {"announce": "closed"},
                {"quick": 30, "slow": 40, "staged": 15, "abandoned": 15}, rate=40,
                needs=("announce",), early="created"),
    SectionKind("settle", {"announce": "closed", "settle": "1"},
                {"quick": 40, "slow": 40, "abandoned": 20}, rate=30,
                needs=("announce", "settle"), early="all", grace_keys=("settle",)),
    # Redis streams.
    SectionKind("stream", {"queue_type": "stream"},
                {"quick": 60, "slow": 15, "staged": 15, "abandoned": 10}, rate=50,
                needs=("queue_type",), reader=STREAM),
    # Trees and polling.  The tree is pinned to inotify (as root, "auto"
    # would choose fanotify for it), so that both sources are soaked.
    SectionKind("tree", {"recursive": "true", "watch_mode": "inotify"},
                {"nested": 60, "quick": 30, "abandoned": 10}, rate=30,
                needs=("recursive",), optional=("watch_mode",)),
    # A tree on one fanotify filesystem mark: files a few levels down,
    # sub-directories filled and then renamed within the tree.
    SectionKind("fanotify", {"recursive": "true", "watch_mode": "fanotify"},
                {"nested": 45, "moved": 20, "quick": 25, "abandoned": 10}, rate=30,
                needs=("recursive", "watch_mode"), depth=3, fanotify=True),
    SectionKind("scan", {"watch_mode": "poll", "poll_interval": "1"},
                {"quick": 60, "slow": 20, "staged": 10, "abandoned": 10}, rate=30,
                needs=("watch_mode",), optional=("poll_interval",), grace_keys=("poll_interval",),
                kernel_queue=False),
    # Announcing once: listings (a forced poll every 3 s, and every fault's)
    # announce only what was never announced.
    SectionKind("once", {"announce_once": "true", "extra_fields": "id", "forced_poll": "3"},
                {"quick": 55, "odd": 5, "slow": 15, "staged": 15, "abandoned": 10}, rate=40,
                needs=("announce_once", "extra_fields"), once=True),
    # The worker's half: complete files, run and filed by dirobserver-worker.
    SectionKind("worker", {"announce": "closed"}, {"quick": 60, "slow": 20, "staged": 10, "abandoned": 10},
                rate=20, needs=("announce",), worker=True),
)


def _has_worker() -> bool:
    """Whether this checkout has the worker (C{twistd dirobserver-worker})."""
    import importlib.util

    return importlib.util.find_spec("dirobserver.worker.tap") is not None


def unavailable(kind: SectionKind, where: Path) -> str | None:
    """
    Why C{kind} cannot run with its directory under C{where} on this
    machine (None: it can).  Only a fanotify kind can be refused: the
    observer's own probe (a group and a filesystem mark, made and closed)
    says why, in its words.
    """
    if not kind.fanotify:
        return None
    if os.geteuid() != 0:
        return "a fanotify filesystem mark needs root (CAP_SYS_ADMIN)"
    try:
        from dirobserver.sources.fanotify_choice import problem
    except ImportError:
        return "this dirobserver has no fanotify source"
    return problem(str(where))


def available_kinds(known: Sequence[str] | None = None) -> list[SectionKind]:
    """The kinds the observer in this checkout supports (by its keys)."""
    if known is None:
        from dirobserver.config.settings import KNOWN_KEYS

        known = KNOWN_KEYS
    return [kind for kind in KINDS if kind.available(known)]


@dataclass
class Section:
    """
    One monitored directory of the soak.

    @ivar index: its position (the ledger stores it per file).
    @ivar ops: held by a producer for each step, and by a directory fault for
        its whole duration (no file is written into a directory that is
        being deleted or is renamed away).
    """

    index: int
    name: str
    kind: SectionKind
    directory: Path
    queue: str
    ops: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def record(self) -> str:
        """The key of its record, with C{announce_once} (the observer's default name)."""
        return self.queue + ANNOUNCED_SUFFIX


#: A record's key is its queue's name and this (the observer's default,
#: C{dirobserver.config.keys.ANNOUNCED_SUFFIX}: not imported, so that
#: C{--source} may soak an observer without it).
ANNOUNCED_SUFFIX = ":announced"
#: Reload variants: what a changed configuration changes (see L{ObserverConfig}).
CHANGES = ("forced_poll", "timeout", "max_held", "section_off")
#: Configuration errors a reload must refuse.
INVALID = ("bad_number", "bad_regex", "no_active", "bad_timeout")


@dataclass
class ObserverConfig:
    """
    The observer's INI file and the state the reload faults change.

    @ivar redis: the lines that say where Redis is (L{soak.servers}).
    @ivar off: sections made inactive by a reload (variant C{section_off}).
    @ivar known: the keys the observer knows (for L{SectionKind.optional}).
    """

    path: Path
    redis: list[str]
    sections: list[Section]
    timeout: float = 2.0
    max_held: int = 20000
    inactivity: float = 30.0
    poll_scale: float = 1.0
    off: set[str] = field(default_factory=set)
    known: Sequence[str] = ()

    def text(self, invalid: str | None = None) -> str:
        """The file's text, with one mistake of L{INVALID} if C{invalid}."""
        timeout = "-1" if invalid == "bad_timeout" else f"{self.timeout:g}"
        lines = ["[common]", *self.redis, f"timeout={timeout}",
                 f"max_held_events={self.max_held}", f"monitor_inactivitytimeout={self.inactivity:g}", ""]
        for section in self.sections:
            active = section.name not in self.off and invalid != "no_active"
            lines += [f"[{section.name}:common]", f"active={'true' if active else 'false'}",
                      f"directory={section.directory}", f"queue={section.queue}"]
            for key, value in section.kind.keys.items():
                if key in section.kind.optional and key not in self.known:
                    continue
                value = value.replace("{name}", section.name)
                if key == "forced_poll":
                    value = f"{float(value) * self.poll_scale:g}"
                lines.append(f"{key}={value}")
            lines.append("")
        if invalid == "bad_number":
            lines.insert(lines.index(f"[{self.sections[0].name}:common]") + 1, "forced_poll=soon")
        elif invalid == "bad_regex":
            lines.insert(lines.index(f"[{self.sections[-1].name}:common]") + 1, "only=^(unclosed")
        return "\n".join(lines)

    def write(self, invalid: str | None = None) -> None:
        """Replace the file at once (rename), so no reader sees half of it."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(self.text(invalid))
        os.replace(temporary, self.path)

    def change(self, variant: str, section: str | None = None) -> str:
        """Apply one of L{CHANGES}; return what changed, in words."""
        if variant == "forced_poll":
            self.poll_scale = 1.0 if self.poll_scale != 1.0 else 5 / 3
            return f"forced_poll x{self.poll_scale:.2f}"
        if variant == "timeout":
            self.timeout = 3.0 if self.timeout == 2.0 else 2.0
            return f"timeout {self.timeout:g}"
        if variant == "max_held":
            self.max_held = 30000 if self.max_held == 20000 else 20000
            return f"max_held_events {self.max_held}"
        if variant == "section_off":
            assert section is not None
            if section in self.off:
                self.off.discard(section)
                return f"[{section}] active again"
            self.off.add(section)
            return f"[{section}] inactive"
        raise ValueError(variant)
