"""Tests for dirobserver.config.settings: INI syntax, inheritance, validation, messages."""

import dataclasses
import os
import re
import textwrap
from pathlib import Path

import pytest

from dirobserver.config import settings as config
from dirobserver.config.ini import ExtendedConfigParser
from dirobserver.config.settings import ConfigError

PATH = "directory_observer.ini"
REPO_ROOT = Path(__file__).resolve().parent.parent

# A minimal valid configuration; tests append or substitute sections.
COMMON = """\
[common]
redis_server=127.0.0.1
redis_port=8080
"""
STAGE1 = """\
[stage1:common]
active=true
directory=/data/stage1
queue=queue:stage1
"""


def parse(text: str, **kwargs) -> config.Settings:
    return config.parse(textwrap.dedent(text), PATH, **kwargs)


def error_of(text: str, **kwargs) -> str:
    """Parse C{text} expecting a ConfigError; return its message, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        parse(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def extended(text: str) -> ExtendedConfigParser:
    parser = ExtendedConfigParser(PATH)
    parser.read_string(textwrap.dedent(text))
    return parser


# --- the sample file -----------------------------------------------------------

def test_sample_file_at_repo_root_loads_two_sections_on_port_8080():
    settings = config.load(str(REPO_ROOT / "directory_observer.ini"))
    assert [s.name for s in settings.sections] == ["stage1", "stage2"]
    # The sample spells the key Redis_server / Redis_port: keys are case-insensitive.
    assert settings.redis.host == "127.0.0.1"
    assert settings.redis.port == 8080
    assert settings.redis.describe() == "127.0.0.1:8080"
    assert settings.redis.timeout == 10.0
    assert settings.inactivity_timeout == 300.0
    assert settings.max_held_events == 100000
    assert settings.warnings == ()
    stage1, stage2 = settings.sections
    assert stage1.directory == str(REPO_ROOT / "dir" / "stage1")
    assert stage2.directory == str(REPO_ROOT / "dir" / "stage2")
    assert (stage1.queue, stage1.counter) == ("queue:stage1", "counter:stage1")
    assert (stage2.queue, stage2.counter) == ("queue:stage2", "counter:stage2")
    assert stage1.forced_poll == 300.0 and stage1.poll_queue_limit == 10000
    assert stage1.subdirectories is False
    assert stage1.accepts("image.fits")
    for skipped in ("a.t", "a.tmp", "a.01", "a.0123456789", "a.working"):
        assert not stage1.accepts(skipped), skipped
    assert stage1.accepts("a.012")


# --- the generic inheritance layer ------------------------------------------------

def test_single_parent_provides_missing_keys_and_child_overrides():
    parser = extended("""
        [parent]
        a=from parent
        b=from parent
        [child:parent]
        b=from child
    """)
    assert parser.get("child", "a") == "from parent"
    assert parser.get("child", "b") == "from child"
    assert parser.source("child", "a") == "parent"
    assert parser.source("child", "b") == "child"
    assert parser.parents("child") == ("parent",)
    assert parser.keys("child") == ["b"]


def test_multiple_parents_are_searched_left_to_right():
    parser = extended("""
        [p1]
        x=p1
        [p2]
        x=p2
        y=p2
        [child:p1:p2]
    """)
    assert parser.parents("child") == ("p1", "p2")
    assert parser.get("child", "x") == "p1"
    assert parser.get("child", "y") == "p2"


def test_parents_of_a_parent_are_searched_before_the_next_parent():
    parser = extended("""
        [grand]
        x=grand
        [p1:grand]
        [p2]
        x=p2
        [child:p1:p2]
    """)
    assert parser.get("child", "x") == "grand"
    assert parser.lineage("child") == ("child", "p1", "grand", "p2")


def test_shared_ancestor_is_visited_once_at_its_first_place():
    parser = extended("""
        [root]
        [a:root]
        [b:root]
        [child:a:b]
    """)
    assert parser.lineage("child") == ("child", "a", "root", "b")


def test_base_section_common_is_the_fallback_after_all_parents():
    parser = extended("""
        [common]
        x=common
        y=common
        [p]
        x=p
        [child:p]
    """)
    assert parser.get("child", "x") == "p"
    assert parser.get("child", "y") == "common"
    assert parser.source("child", "y") == "common"


def test_default_section_is_the_lowest_fallback_and_not_listed():
    parser = extended("""
        [DEFAULT]
        x=default
        y=default
        [common]
        x=common
        [child]
    """)
    assert parser.get("child", "x") == "common"
    assert parser.get("child", "y") == "default"
    assert parser.get("common", "y") == "default"
    assert parser.sections() == ["common", "child"]
    assert parser.has_section("DEFAULT")


def test_keys_are_case_insensitive_but_section_names_are_not():
    parser = extended("""
        [Stage]
        Forced_Poll=1
        [stage]
        FORCED_POLL=2
    """)
    assert parser.sections() == ["Stage", "stage"]
    assert parser.keys("Stage") == ["forced_poll"]
    assert parser.get("Stage", "forced_poll") == "1"
    assert parser.get("stage", "Forced_poll") == "2"


def test_missing_key_raises_config_error_unless_a_fallback_is_given():
    parser = extended("[a]\n")
    assert parser.get("a", "nope", fallback="dflt") == "dflt"
    assert parser.get("a", "nope", None) is None
    assert parser.source("a", "nope") is None
    with pytest.raises(ConfigError, match=r"\[a\] nope: not set"):
        parser.get("a", "nope")
    with pytest.raises(ConfigError, match=r"\[zz\] no such section"):
        parser.get("zz", "x")


def test_values_keep_percent_dollar_and_semicolons_verbatim():
    parser = extended("""
        [a]
        ignore=^%(x)s$;^.*$HOME$
        ; a comment line
        # another comment
    """)
    assert parser.get("a", "ignore") == "^%(x)s$;^.*$HOME$"
    assert parser.keys("a") == ["ignore"]


def test_unknown_parent_is_an_error_naming_the_section():
    message = error_of("[child:ghost]\nactive=true\n")
    assert message == f"{PATH}: [child] unknown parent section [ghost]"


def test_inheritance_cycle_is_an_error_showing_the_cycle():
    message = error_of("[a:b]\n[b:c]\n[c:a]\n")
    assert message.startswith(f"{PATH}: [a] inheritance cycle:")
    assert "a -> b -> c -> a" in message


def test_section_naming_itself_as_parent_is_a_cycle():
    assert "inheritance cycle: a -> a" in error_of("[a:a]\n")


# --- syntax errors ---------------------------------------------------------------

def test_line_without_delimiter_is_a_syntax_error_with_line_number():
    message = error_of(COMMON + "this is not a key value pair\n")
    assert message == f"{PATH}: line 4: syntax error: expected 'key = value', found 'this is not a key value pair'"


def test_text_before_first_section_is_a_syntax_error():
    message = error_of("active=true\n" + COMMON)
    assert message.startswith(f"{PATH}: line 1: syntax error: text before the first section header")


def test_duplicate_section_header_is_a_syntax_error():
    message = error_of(COMMON + STAGE1 + STAGE1)
    assert message == f"{PATH}: line 8: syntax error: duplicate section [stage1:common]"


def test_same_section_name_with_different_parents_is_a_duplicate():
    message = error_of(COMMON + STAGE1 + "[stage1]\nactive=false\n")
    assert message == f"{PATH}: line 8: syntax error: duplicate section [stage1]"


def test_duplicate_key_in_a_section_is_a_syntax_error_even_with_other_case():
    message = error_of(COMMON + STAGE1 + "Queue=again\n")
    assert message == f"{PATH}: line 8: syntax error: [stage1:common] duplicate key 'queue'"


def test_empty_section_or_parent_name_is_a_syntax_error():
    assert "empty section name in [:common]" in error_of(COMMON + "[:common]\n")
    assert "empty section name in [a::common]" in error_of(COMMON + "[a::common]\n")


# --- values: lists, regexes and accepts() ------------------------------------------

def test_semicolon_lists_are_split_stripped_and_empty_items_dropped():
    settings = parse(COMMON + STAGE1 + "ignore= ^a$ ; ;^b$ ;\nonly=^x ; ^y\n")
    section = settings.sections[0]
    assert [p.pattern for p in section.ignore] == ["^a$", "^b$", r"^.*\.working$"]
    assert [p.pattern for p in section.only] == ["^x", "^y"]


def test_working_files_are_always_ignored_even_without_an_ignore_key():
    section = parse(COMMON + STAGE1).sections[0]
    assert [p.pattern for p in section.ignore] == [r"^.*\.working$"]
    assert [p.pattern for p in section.only] == ["^.*$"]
    assert section.accepts("data.bin")
    assert not section.accepts("data.bin.working")


def test_working_pattern_is_not_duplicated_when_the_user_lists_it():
    section = parse(COMMON + STAGE1 + "ignore=^.*\\.working$;^a$\n").sections[0]
    assert [p.pattern for p in section.ignore] == [r"^.*\.working$", "^a$"]


def test_accepts_needs_some_only_match_and_no_ignore_match():
    section = parse(COMMON + STAGE1 + "only=^.*\\.fits$;^.*\\.txt$\nignore=^tmp_\n").sections[0]
    assert section.accepts("a.fits")
    assert section.accepts("b.txt")
    assert not section.accepts("c.dat")          # matches no `only`
    assert not section.accepts("tmp_a.fits")     # matches an `ignore`
    assert not section.accepts("a.fits.working")
    assert section.accepts("x_tmp_a.fits")       # re.match anchors at the start only


def test_accepts_matches_a_plain_loop_over_the_patterns():
    """The speed-up (one alternation) must not change any answer."""
    pattern_sets = [
        ["^a", "b$", r"^.*\.t$"],
        [r"^(a)\1$", "^x"],           # back-reference: cannot be merged
        ["(?i)^A", "^b"],             # global inline flag: cannot be merged
        ["^(?i:A)b", "^.*$"],         # scoped flag: can be merged
        ["^.*$"],
    ]
    names = ["a", "aa", "A", "Ab", "ab", "b", "xb", "x.t", "x", "", "a\nb", "B", "zz"]
    for patterns in pattern_sets:
        compiled = tuple(re.compile(p) for p in patterns)
        section = config.SectionSettings(
            name="s", directory="/d", queue="q", counter=None, forced_poll=0.0,
            poll_queue_limit=0, ignore=(), only=compiled, subdirectories=False)
        for name in names:
            expected = any(p.match(name) for p in compiled)
            assert section.accepts(name) == expected, (patterns, name)
        inverted = dataclasses.replace(section, only=(re.compile("^.*$", re.S),), ignore=compiled)
        for name in names:
            assert inverted.accepts(name) == (not any(p.match(name) for p in compiled)), (patterns, name)


def test_patterns_match_names_with_newlines_dotall():
    """A file name may hold a newline: `.` matches it (DOTALL), so the
    default `only` (^.*$) accepts every name and `.working` is still ignored."""
    section = parse(COMMON + STAGE1).sections[0]
    assert section.accepts("a\n")
    assert section.accepts("a\nb")
    assert not section.accepts("a\nb.working")


def test_invalid_regular_expression_is_reported_with_section_and_key():
    message = error_of(COMMON + STAGE1 + "[stage2:common]\nactive=true\ndirectory=/d2\nqueue=q2\nonly=^a$;([a-z]\n")
    assert message == (f"{PATH}: [stage2] only: invalid regular expression '([a-z]': "
                       "missing ), unterminated subpattern at position 0")
    message = error_of(COMMON + STAGE1 + "ignore=([a-z\n")
    assert message == (f"{PATH}: [stage1] ignore: invalid regular expression '([a-z': "
                       "unterminated character set at position 1")


def test_empty_only_list_is_an_error_rather_than_skipping_everything():
    assert error_of(COMMON + STAGE1 + "only= ; \n").startswith(f"{PATH}: [stage1] only: empty list")


# --- values: numbers, booleans and defaults --------------------------------------------

def test_defaults_for_optional_keys():
    settings = parse(COMMON + STAGE1)
    section = settings.sections[0]
    assert section.counter is None
    assert section.forced_poll == 0.0
    assert section.poll_queue_limit == 10000
    assert section.subdirectories is False
    assert settings.inactivity_timeout == 300.0
    assert settings.max_held_events == 100000
    assert settings.redis == config.RedisSettings(
        host="127.0.0.1", port=8080, unix_socket=None, password=None, db=None, timeout=10.0)


def test_typed_values_are_parsed():
    settings = parse(COMMON + STAGE1 + textwrap.dedent("""\
        counter=cnt
        forced_poll=2.5
        poll_queue_limit=0
        subdirectories=Yes
        monitor_inactivitytimeout=60
        max_held_events=5
        redis_password=s3cret
        redis_db=3
        timeout=1.5
    """))
    section = settings.sections[0]
    assert (section.counter, section.forced_poll, section.poll_queue_limit) == ("cnt", 2.5, 0)
    assert section.subdirectories is True
    assert (settings.inactivity_timeout, settings.max_held_events) == (60.0, 5)
    assert (settings.redis.password, settings.redis.db, settings.redis.timeout) == ("s3cret", 3, 1.5)


@pytest.mark.parametrize("word", ["", "null", "NONE", "None"])
def test_counter_empty_null_or_none_means_no_counter(word):
    assert parse(COMMON + STAGE1 + f"counter={word}\n").sections[0].counter is None


@pytest.mark.parametrize("word, value", [("1", True), ("ON", True), ("true", True), ("yes", True),
                                         ("0", False), ("Off", False), ("FALSE", False), ("no", False)])
def test_booleans_accept_configparser_words_case_insensitively(word, value):
    text = COMMON + STAGE1 + f"subdirectories={word}\n"
    assert parse(text).sections[0].subdirectories is value


@pytest.mark.parametrize("value", ["0", "-5", "-0.1"])
def test_inactivity_timeout_zero_or_negative_disables_the_watchdog(value):
    settings = parse(COMMON + STAGE1 + f"monitor_inactivitytimeout={value}\n")
    assert settings.inactivity_timeout == 0.0
    assert str(settings.inactivity_timeout) == "0.0"


def test_non_number_is_reported_in_the_active_section():
    assert error_of(COMMON + STAGE1 + "forced_poll=abc\n") == f"{PATH}: [stage1] forced_poll: 'abc' is not a number"


def test_inherited_invalid_value_is_reported_in_the_active_section_with_its_origin():
    message = error_of(COMMON + "forced_poll=abc\n" + STAGE1)
    assert message == f"{PATH}: [stage1] forced_poll: 'abc' is not a number (inherited from [common])"


def test_empty_numeric_value_means_the_default_even_over_an_inherited_value():
    settings = parse(COMMON + "forced_poll=5\npoll_queue_limit=7\n" + STAGE1 + "forced_poll=\npoll_queue_limit=\n")
    assert (settings.sections[0].forced_poll, settings.sections[0].poll_queue_limit) == (0.0, 10000)


def test_invalid_values_in_inactive_sections_are_not_validated():
    settings = parse(COMMON + STAGE1 + "[spare]\nactive=off\nforced_poll=abc\nonly=([\n")
    assert [s.name for s in settings.sections] == ["stage1"]


@pytest.mark.parametrize("line, problem", [
    ("forced_poll=-1", "forced_poll: '-1' must be at least 0"),
    ("forced_poll=nan", "forced_poll: 'nan' is not a number"),
    ("forced_poll=inf", "forced_poll: 'inf' is not a number"),
    ("poll_queue_limit=-1", "poll_queue_limit: '-1' must be at least 0"),
    ("poll_queue_limit=1.5", "poll_queue_limit: '1.5' is not an integer"),
    ("monitor_inactivitytimeout=soon", "monitor_inactivitytimeout: 'soon' is not a number"),
    ("max_held_events=0", "max_held_events: '0' must be at least 1"),
    ("max_held_events=lots", "max_held_events: 'lots' is not an integer"),
    ("timeout=-1", "timeout: '-1' must be at least 0"),
    ("timeout=x", "timeout: 'x' is not a number"),
    ("redis_port=0", "redis_port: '0' must be between 1 and 65535"),
    ("redis_port=65536", "redis_port: '65536' must be between 1 and 65535"),
    ("redis_port=http", "redis_port: 'http' is not an integer"),
    ("redis_db=-1", "redis_db: '-1' must be at least 0"),
    ("redis_db=one", "redis_db: 'one' is not an integer"),
    ("subdirectories=maybe", "subdirectories: 'maybe' is not a boolean"),
])
def test_invalid_value_is_one_line_naming_file_section_and_key(line, problem):
    message = error_of(COMMON + STAGE1 + line + "\n")
    assert message.startswith(f"{PATH}: [stage1] {problem}")


def test_bad_boolean_for_active_in_an_active_candidate_is_an_error():
    message = error_of(COMMON + STAGE1.replace("active=true", "active=sure"))
    assert message.startswith(f"{PATH}: [stage1] active: 'sure' is not a boolean")


def test_bad_boolean_for_active_is_an_error_even_in_an_otherwise_unused_section():
    message = error_of(COMMON + STAGE1 + "[spare]\nactive=perhaps\n")
    assert message.startswith(f"{PATH}: [spare] active: 'perhaps' is not a boolean")


@pytest.mark.parametrize("key", ["directory", "queue"])
def test_active_section_without_directory_or_queue_is_an_error(key):
    text = COMMON + "".join(line + "\n" for line in STAGE1.splitlines() if not line.startswith(key))
    assert error_of(text) == f"{PATH}: [stage1] {key}: required in an active section"


def test_empty_queue_counts_as_missing():
    text = COMMON + STAGE1.replace("queue=queue:stage1", "queue=")
    assert error_of(text) == f"{PATH}: [stage1] queue: required in an active section"


def test_no_active_section_is_an_error():
    message = error_of(COMMON + "active=true\n[stage1:common]\nactive=false\ndirectory=/d\nqueue=q\n")
    assert message.startswith(f"{PATH}: no active section")


def test_common_is_never_a_monitored_section_and_its_active_is_inherited():
    settings = parse(COMMON + "active=true\ndirectory=/d\nqueue=q\n[stage1:common]\n[stage2:common]\nactive=no\n")
    assert [s.name for s in settings.sections] == ["stage1"]


def test_active_sections_keep_file_order():
    text = COMMON + "[b:common]\nactive=1\ndirectory=/b\nqueue=qb\n[a:common]\nactive=1\ndirectory=/a\nqueue=qa\n"
    assert [s.name for s in parse(text).sections] == ["b", "a"]


# --- global settings shared by active sections ---------------------------------------------

TWO_STAGES = COMMON + STAGE1 + "[stage2:common]\nactive=true\ndirectory=/data/stage2\nqueue=queue:stage2\n"


def test_disagreeing_redis_port_names_both_sections_key_and_values():
    text = TWO_STAGES.replace("queue=queue:stage1\n", "queue=queue:stage1\nredis_port=8081\n")
    assert error_of(text) == (f"{PATH}: [stage1] and [stage2] disagree on redis_port (8081 and 8080): "
                              "all active sections must use one Redis server")


@pytest.mark.parametrize("line, key", [("redis_server=10.0.0.1", "redis_server"), ("redis_db=2", "redis_db"),
                                       ("timeout=3", "timeout"), ("redis_unix_socket=/s", "redis_unix_socket")])
def test_disagreeing_redis_settings_are_errors(line, key):
    message = error_of(TWO_STAGES + line + "\n")
    assert message.startswith(f"{PATH}: [stage1] and [stage2] disagree on {key} (")
    assert message.endswith("all active sections must use one Redis server")


def test_disagreeing_password_does_not_print_the_passwords():
    message = error_of(TWO_STAGES + "redis_password=hunter2\n")
    assert "disagree on redis_password (values not shown)" in message
    assert "hunter2" not in message


def test_disagreeing_inactivity_timeout_names_both_sections():
    message = error_of(TWO_STAGES + "monitor_inactivitytimeout=60\n")
    assert message == (f"{PATH}: [stage1] and [stage2] disagree on monitor_inactivitytimeout "
                       "(300 and 60): all active sections must share one value")


def test_disagreeing_max_held_events_names_both_sections():
    message = error_of(TWO_STAGES + "max_held_events=7\n")
    assert message.startswith(f"{PATH}: [stage1] and [stage2] disagree on max_held_events (100000 and 7)")


def test_equal_values_written_differently_agree():
    settings = parse(TWO_STAGES + "redis_port=08080\ntimeout=10.0\n")
    assert settings.redis.port == 8080 and settings.redis.timeout == 10.0


def test_inactive_sections_may_disagree():
    settings = parse(COMMON + STAGE1 + "[spare:common]\nactive=false\ndirectory=/s\nqueue=s\nredis_port=1\n")
    assert [s.name for s in settings.sections] == ["stage1"]


# --- Redis settings -----------------------------------------------------------------------

def test_redis_server_and_port_are_required_without_redis_optional():
    text = "[common]\n" + STAGE1
    assert error_of(text) == f"{PATH}: [stage1] redis_server: required in an active section"
    message = error_of("[common]\nredis_server=h\n" + STAGE1)
    assert message == f"{PATH}: [stage1] redis_port: required in an active section (or set redis_unix_socket)"


def test_redis_optional_defaults_to_localhost_6379():
    settings = parse("[common]\n" + STAGE1, redis_optional=True)
    assert (settings.redis.host, settings.redis.port) == ("127.0.0.1", 6379)
    assert settings.redis.describe() == "127.0.0.1:6379"


def test_redis_optional_keeps_explicit_values():
    settings = parse(COMMON + STAGE1, redis_optional=True)
    assert (settings.redis.host, settings.redis.port) == ("127.0.0.1", 8080)


def test_unix_socket_makes_host_and_port_optional():
    settings = parse("[common]\nredis_unix_socket=/run/redis.sock\n" + STAGE1)
    redis = settings.redis
    assert (redis.host, redis.port, redis.unix_socket) == (None, None, "/run/redis.sock")
    assert redis.describe() == "unix:/run/redis.sock"
    assert settings.warnings == ()


def test_unix_socket_wins_over_host_and_port_with_a_warning():
    settings = parse(COMMON + "redis_unix_socket=/run/redis.sock\n" + STAGE1)
    assert (settings.redis.host, settings.redis.port) == (None, None)
    assert any("redis_server and redis_port are ignored" in w for w in settings.warnings)


@pytest.mark.parametrize("word", ["", "null", "NULL", "none"])
def test_empty_or_null_unix_socket_means_none(word):
    assert parse(COMMON + f"redis_unix_socket={word}\n" + STAGE1).redis.unix_socket is None


def test_empty_password_and_db_mean_none():
    redis = parse(COMMON + "redis_password=\nredis_db=\n" + STAGE1).redis
    assert (redis.password, redis.db) == (None, None)


def test_timeout_zero_is_replaced_by_ten_with_one_warning():
    settings = parse(COMMON + "timeout=0\n" + STAGE1 + "[stage2:common]\nactive=1\ndirectory=/d2\nqueue=q2\n")
    assert settings.redis.timeout == 10.0
    assert len(settings.warnings) == 1        # inherited by two sections, reported once
    warning = settings.warnings[0]
    assert warning.startswith(f"{PATH}: [common] timeout:")
    assert "would hold events forever" in warning and "10 seconds" in warning
    assert "\n" not in warning


# --- warnings ---------------------------------------------------------------------------

def test_unknown_key_is_an_error_with_a_suggestion():
    """A typo changes what runs: it stops the program, naming the key and the near miss."""
    with pytest.raises(ConfigError) as info:
        parse(COMMON + "Forced_Pol=3\n" + STAGE1)
    assert str(info.value) == f"{PATH}: [common] unknown key 'forced_pol' (did you mean 'forced_poll'?)"


def test_unknown_key_without_close_match_has_no_suggestion_and_checks_every_section():
    with pytest.raises(ConfigError) as info:
        parse(COMMON + STAGE1 + "[spare]\nxyzzy=1\n")
    assert str(info.value) == f"{PATH}: [spare] unknown key 'xyzzy'"
    with pytest.raises(ConfigError) as info:
        parse("[DEFAULT]\nzzz=1\n" + COMMON + STAGE1 + "[spare]\nxyzzy=1\n")
    assert str(info.value) == f"{PATH}: [spare] unknown key 'xyzzy'; and 1 more unknown keys"


def test_an_inactive_section_misspelling_active_is_refused():
    """C{actve = true} would leave the section unwatched while the daemon says ready."""
    with pytest.raises(ConfigError) as info:
        parse(COMMON + STAGE1 + "[stage2:common]\nactve=true\ndirectory=/d2\nqueue=q2\n")
    assert str(info.value) == f"{PATH}: [stage2] unknown key 'actve' (did you mean 'active'?)"


def test_two_sections_watching_the_same_directory_warn():
    settings = parse(TWO_STAGES.replace("/data/stage2", "/data/stage1"))
    assert settings.warnings == (f"{PATH}: [stage1] and [stage2] both watch /data/stage1",)


# --- paths and files -----------------------------------------------------------------------

def test_relative_directory_is_resolved_against_the_config_file_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "obs.ini").write_text(COMMON + STAGE1.replace("/data/stage1", "dir/../in/stage1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = config.load(str(conf_dir / "obs.ini"))
    assert settings.sections[0].directory == str(conf_dir / "in" / "stage1")
    # A relative config path works too: it is made absolute before resolving.
    monkeypatch.chdir(tmp_path)
    assert config.load("etc/obs.ini").sections[0].directory == str(conf_dir / "in" / "stage1")


def test_tilde_in_directory_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = parse(COMMON + STAGE1.replace("/data/stage1", "~/watched/"))
    assert settings.sections[0].directory == str(tmp_path / "watched")


def test_absolute_directory_is_normalized():
    settings = parse(COMMON + STAGE1.replace("/data/stage1", "/data//x/../stage1/"))
    assert settings.sections[0].directory == "/data/stage1"


def test_missing_file_is_one_line_error_with_the_path_as_given():
    with pytest.raises(ConfigError) as info:
        config.load("/x/y.ini")
    assert str(info.value) == "cannot read configuration file /x/y.ini: No such file or directory"


def test_directory_as_config_path_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path))
    assert str(info.value) == f"cannot read configuration file {tmp_path}: is a directory"


def test_file_that_is_not_utf8_is_one_line_error_with_line_number(tmp_path):
    path = tmp_path / "bad.ini"
    path.write_bytes(COMMON.encode() + b"queue=caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert str(info.value) == f"{path}: line 4: not valid UTF-8 (byte 0xe9)"


def test_syntax_error_from_a_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.ini"
    path.write_text(COMMON + "garbage\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert str(info.value).startswith(f"{path}: line 4: syntax error:")


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.ini"
    path.write_bytes(b"\xef\xbb\xbf" + (COMMON + STAGE1).encode())
    assert config.load(str(path)).redis.port == 8080


def test_load_passes_redis_optional(tmp_path):
    path = tmp_path / "c.ini"
    path.write_text("[common]\n" + STAGE1)
    assert config.load(str(path), redis_optional=True).redis.port == 6379
    with pytest.raises(ConfigError):
        config.load(str(path))


def test_settings_are_frozen():
    settings = parse(COMMON + STAGE1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sections[0].queue = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.redis.port = 1  # type: ignore[misc]
    assert settings.path == PATH
    assert os.path.isabs(settings.sections[0].directory)


def test_default_section_values_reach_active_sections_but_default_is_never_monitored():
    text = "[DEFAULT]\nactive=true\nredis_port=6380\nqueue=dq\n[common]\nredis_server=h\n[stage1]\ndirectory=/d\n"
    settings = parse(text)
    assert [s.name for s in settings.sections] == ["stage1"]
    assert (settings.redis.host, settings.redis.port) == ("h", 6380)
    assert settings.sections[0].queue == "dq"


def test_fast_paths_agree_with_the_regex_engine():
    """The shortcuts for ^.*$ and ^.*SUFFIX$ (DOTALL) give the regex's answers."""
    from dirobserver.config.filters import FLAGS as _FLAGS, any_match as _any_match

    names = ["a.working", "a.working\n", "a.working\nx", "x.tmp", "b", "", ".working",
             "a+b", "xa+b", "aab", "x.5", "new\nline", "\udcff.working"]
    for patterns in (
        [r"^.*\.working$"],
        [r"^.*\.working$", r"^.*\.tmp$"],
        [r"^.*a\+b$"],
        [r"^.*$"],
        [r"^.*\.[0-9]$", r"^.*\.working$"],
    ):
        compiled = tuple(re.compile(p, _FLAGS) for p in patterns)
        matcher = _any_match(compiled)
        for name in names:
            assert bool(matcher(name)) == any(p.match(name) for p in compiled), (patterns, name)


# --- waiting for replicas -----------------------------------------------------------------

def test_redis_wait_replicas_is_off_by_default_and_read_with_its_timeout():
    assert (parse(COMMON + STAGE1).redis.wait_replicas, parse(COMMON + STAGE1).redis.wait_timeout) == (0, 1.0)
    settings = parse(COMMON + STAGE1 + "redis_wait_replicas=2\nredis_wait_timeout=0.25\n")
    assert (settings.redis.wait_replicas, settings.redis.wait_timeout) == (2, 0.25)


def test_a_wait_for_replicas_as_long_as_the_reply_deadline_is_an_error():
    message = error_of(COMMON + STAGE1 + "redis_wait_replicas=1\nredis_wait_timeout=10\n")
    assert message == (f"{PATH}: [stage1] redis_wait_timeout: must be shorter than timeout (10 s): a round "
                       "that waits longer than that is taken for a Redis that does not answer")
    # Without replicas to wait for, the timeout is not used, and not judged.
    assert parse(COMMON + STAGE1 + "redis_wait_timeout=10\n").redis.wait_replicas == 0


@pytest.mark.parametrize("line, said", [("redis_wait_replicas=-1", "redis_wait_replicas: '-1' must be at least 0"),
                                        ("redis_wait_replicas=one", "redis_wait_replicas: 'one' is not an integer"),
                                        ("redis_wait_timeout=0", "redis_wait_timeout: '0' must be at least 0.001")])
def test_bad_wait_values_name_the_key(line, said):
    assert error_of(COMMON + STAGE1 + line + "\n") == f"{PATH}: [stage1] {said}"
