"""Tests for what dirobserver.config.settings derives from its table of keys (KEYS).

The validation, the unknown-key error, the rule that active sections agree
on the keys of scope C{common}, and docs/configuration.md's reference all
come from one table; these tests check each derivation against the table
itself, so a new row is covered without a new test.
"""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from dirobserver.config import reference, settings as config, values as kinds
from dirobserver.config.ini import ExtendedConfigParser
from dirobserver.config.settings import COMMON, GROUPS, KEYS, SECTION, ConfigError
from tests.kit.config import ini_section, section

PATH = "directory_observer.ini"
REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_DOC = REPO_ROOT / "docs" / "configuration.md"
BASE = "[common]\nredis_server=127.0.0.1\nredis_port=8080\n"
#: Keys valid only with others (checked by config's cross-key rules): the
#: [common] section each is tried with, in place of BASE.
NEEDS = {
    "redis_sentinels": "[common]\nredis_sentinel_master=m\n",
    "redis_username": BASE + "redis_password=p\n",
    "redis_sentinel_username":
        "[common]\nredis_sentinels=127.0.0.1:26379\nredis_sentinel_master=m\nredis_sentinel_password=p\n",
}


def base_for(key: config.Key) -> str:
    """The [common] section that C{key} can be set in alone."""
    return NEEDS.get(key.name, BASE)


def section_text(name: str, key: str = "", value: str = "") -> str:
    """An active section C{name}, with C{key=value} (replacing its own line, if any)."""
    values = section(f"/data/{name}", f"queue:{name}")
    if key:
        values[key] = value
    return ini_section(f"{name}:common", values)


def field_value(settings: config.Settings, key: config.Key, section_index: int = 0):
    """The value C{key} filled in C{settings} (its section's, for a section key)."""
    owner = settings.sections[section_index] if key.scope == SECTION else settings
    for attr in str(key.field).split("."):
        owner = getattr(owner, attr)
    return owner


def two_values(key: config.Key) -> tuple[str, str]:
    """Two different valid texts for C{key}, chosen from its kind alone."""
    kind = key.kind
    if isinstance(kind, kinds.Boolean):
        return "true", "false"
    if isinstance(kind, kinds.Number):
        low = 0 if kind.low == -math.inf else kind.low
        if kind.high is not None and low + 2.5 > kind.high:
            # A narrow range (linger: 0 to 1 s): two values inside it.
            span = kind.high - low
            return f"{low + span / 4:g}", f"{low + span / 2:g}"
        return (str(low + 1), str(low + 2)) if kind.integer else (f"{low + 1.5}", f"{low + 2.5}")
    if isinstance(kind, kinds.Patterns):
        return "^a", "^b"
    if isinstance(kind, kinds.Path):
        return "/srv/a", "/srv/b"
    if isinstance(kind, kinds.Choice):
        return kind.words[-1], kind.words[0]
    if isinstance(kind, kinds.Addresses):
        return "10.0.0.1:26379", "10.0.0.2:26379; [::1]:26380"
    if isinstance(kind, kinds.Words):
        return kind.words[-1], ";".join(kind.words[:2])
    assert isinstance(kind, kinds.Text), f"{key.name}: give this kind sample values here"
    return "value-one", "value-two"


def empty_reader() -> kinds.SectionReader:
    """A reader over a section that sets nothing: every key reads its default."""
    parser = ExtendedConfigParser(PATH)
    parser.read_string("[s]\n")
    return kinds.SectionReader(parser, "s", {})


KEYS_WITH_FIELD = [key for key in KEYS if key.field]


# --- the table itself -----------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.name)
def test_every_key_has_help_a_default_a_scope_and_a_group(key):
    assert key.name == key.name.lower() and key.name.strip() == key.name
    assert key.scope in (SECTION, COMMON)
    assert key.group in GROUPS
    assert key.help.strip() and "\n" not in key.help and "|" not in key.help
    assert key.default_markdown().strip()
    assert key.kind.describe().strip()


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.name)
def test_every_default_is_a_valid_value_of_its_kind(key):
    """An unset key reads as its default: the default must pass its own bounds."""
    reader = empty_reader()
    if key.default is None:
        with pytest.raises(ConfigError, match=f"{key.name}: required in an active section"):
            key.kind.read(reader, key.name, key.default)
    else:
        key.kind.read(reader, key.name, key.default)


def test_key_names_are_unique_and_known_keys_come_from_the_table():
    names = [key.name for key in KEYS]
    assert len(set(names)) == len(names)
    assert config.KNOWN_KEYS == tuple(names)


def test_every_settings_field_is_filled_by_exactly_one_key():
    """A new field without its row (or a row naming no field) is caught here."""
    filled = [key.field for key in KEYS_WITH_FIELD]
    assert len(set(filled)) == len(filled)
    section_fields = {f.name for f in dataclasses.fields(config.SectionSettings) if f.init} - {"name"}
    redis_fields = {f"redis.{f.name}" for f in dataclasses.fields(config.RedisSettings)}
    top_fields = {f.name for f in dataclasses.fields(config.Settings)} - {"path", "sections", "redis", "warnings"}
    assert {key.field for key in KEYS_WITH_FIELD if key.scope == SECTION} == section_fields
    assert {key.field for key in KEYS_WITH_FIELD if key.scope == COMMON} == redis_fields | top_fields
    assert [key.name for key in KEYS if not key.field] == ["active"]


@pytest.mark.parametrize("key", [k for k in KEYS_WITH_FIELD if k.default is not None and k.shown_default is None],
                         ids=lambda key: key.name)
def test_an_unset_key_fills_its_field_with_the_table_default(key):
    """Keys whose default depends on nothing else (not the Redis host and port)."""
    assert key.name not in BASE + section_text("s")
    settings = config.parse(BASE + section_text("s"), PATH)
    assert field_value(settings, key) == key.read(empty_reader())


@pytest.mark.parametrize("key", KEYS_WITH_FIELD, ids=lambda key: key.name)
def test_a_set_key_fills_its_field(key):
    first, _ = two_values(key)
    settings = config.parse(base_for(key) + section_text("s", key.name, first), PATH)
    expected = key.kind.read(empty_reader(), key.name, first)
    value = field_value(settings, key)
    if isinstance(key.kind, kinds.Patterns):
        assert value[:len(expected)] == expected  # ignore gets ^.*\.working$ appended
    else:
        assert value == expected


# --- derived: the agree rule, unknown keys ---------------------------------------------------

@pytest.mark.parametrize("key", KEYS_WITH_FIELD, ids=lambda key: key.name)
def test_only_common_keys_must_agree_across_active_sections(key):
    one, two = two_values(key)
    text = base_for(key) + section_text("s1", key.name, one) + section_text("s2", key.name, two)
    if key.scope == SECTION:
        settings = config.parse(text, PATH)
        assert field_value(settings, key, 0) != field_value(settings, key, 1)
        return
    with pytest.raises(ConfigError) as info:
        config.parse(text, PATH)
    message = str(info.value)
    assert message.startswith(f"{PATH}: [s1] and [s2] disagree on {key.name} (")
    assert message.endswith(f"all active sections must {key.group.agree}")
    assert ("values not shown" in message) == key.secret
    assert (one in message) != key.secret


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.name)
def test_every_table_key_is_known_and_a_typo_of_it_is_suggested(key):
    spare = {"active": "false", key.name: two_values(key)[1]}  # inactive: not validated
    known = config.parse(BASE + section_text("s") + "[spare]\n" + "".join(f"{k}={v}\n" for k, v in spare.items()), PATH)
    assert not [w for w in known.warnings if "unknown key" in w]
    # One letter dropped, or (announced: that is a key too) one doubled.
    typo = key.name[:-1] if key.name[:-1] not in config.KNOWN_KEYS else key.name + key.name[-1]
    with pytest.raises(ConfigError) as info:
        config.parse(BASE + section_text("s") + f"[spare]\n{typo}=1\n", PATH)
    assert str(info.value) == f"{PATH}: [spare] unknown key {typo!r} (did you mean {key.name!r}?)"


# --- derived: the reference in docs/configuration.md -------------------------------------------

def test_documented_configuration_table_is_the_one_generated_from_the_table():
    readme = CONFIGURATION_DOC.read_text(encoding="utf-8")
    assert readme.count(reference.README_BEGIN) == 1 and readme.count(reference.README_END) == 1
    assert reference.with_reference(readme) == readme, (
        "docs/configuration.md's reference differs from dirobserver/config/keys.py's KEYS: "
        "run `python -m dirobserver.config.reference --write docs/configuration.md`")
    block = readme.split(reference.README_BEGIN)[1].split(reference.README_END)[0]
    for key in KEYS:
        assert f"| `{key.name}` | {key.scope} | {key.kind.describe()} | {key.default_markdown()} |" in block


def test_reference_shows_one_table_per_group_in_table_order():
    text = reference.reference_markdown()
    positions = [text.index(f"**{group.title}**") for group in GROUPS]
    assert positions == sorted(positions)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [key.name for group in GROUPS for key in KEYS if key.group is group]


@pytest.mark.process
def test_command_line_prints_and_rewrites_the_reference(tmp_path):
    run = [sys.executable, "-m", "dirobserver.config.reference"]
    printed = subprocess.run(run + ["--reference"], capture_output=True, text=True, check=True)
    assert printed.stdout == reference.reference_markdown()
    stale = tmp_path / "README.md"
    stale.write_text(f"intro\n{reference.README_BEGIN}\n| old | table |\n{reference.README_END}\noutro\n")
    subprocess.run(run + ["--write", str(stale)], check=True)
    assert stale.read_text() == (f"intro\n{reference.README_BEGIN}\n{reference.reference_markdown()}\n"
                                 f"{reference.README_END}\noutro\n")
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n")
    failed = subprocess.run(run + ["--write", str(unmarked)], capture_output=True, text=True)
    assert failed.returncode == 1 and len(failed.stderr.splitlines()) == 1 and "keys:begin" in failed.stderr
    assert unmarked.read_text() == "no markers\n"
    usage = subprocess.run(run + ["--bogus"], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage:")
