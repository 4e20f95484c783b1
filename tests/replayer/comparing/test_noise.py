"""The noise rules: JSON path patterns, tolerances, replacements, rules files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from replayer.comparing.noise import (
    DEFAULT_IGNORED_HEADERS,
    JsonPattern,
    build_rules,
    load_rules,
    parse_replacement,
    parse_tolerance,
    rules_from_mapping,
)
from trafficmirror.plumbing.errors import ConfigError

# -- rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern,path,expected",
    [
        ("$.a.b", ["a", "b"], True),
        ("$.a.b", ["a"], False),
        ("$.a.*", ["a", "x"], True),
        ("$.a.*", ["a", 3], True),
        ("$.a.*", ["a"], False),
        ("$.items[*].p", ["items", 7, "p"], True),
        ("$.items[2].p", ["items", 7, "p"], False),
        ("$..ts", ["ts"], True),
        ("$..ts", ["a", 1, "b", "ts"], True),
        ("$..ts", ["a", "ts", "x"], False),
        ("$..[0]", ["a", 0], True),
        ("$['a b'].c", ["a b", "c"], True),
        ('$["x"]', ["x"], True),
        ("$", [], True),
    ],
)
def test_json_pattern_matching(pattern: str, path: list[Any], expected: bool) -> None:
    assert JsonPattern.parse(pattern).matches(path) is expected


@pytest.mark.parametrize("bad", ["a.b", "$.", "$[x]", "$[1", "$..", "$.a b", "$.a..", "$#"])
def test_bad_patterns_raise_one_line_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        JsonPattern.parse(bad)
    assert "\n" not in str(info.value) and repr(bad) in str(info.value)


def test_tolerance_and_replacement_parsing() -> None:
    assert parse_tolerance("0.5") == (0.5, 0.0)
    assert parse_tolerance("2%") == (0.0, 0.02)
    for bad in ["x", "-1", "nan", "inf%"]:
        with pytest.raises(ConfigError):
            parse_tolerance(bad)
    rep = parse_replacement(r"id=(\d+)=>id=N")
    assert rep.apply("a id=42 b") == "a id=N b"
    for bad in ["no separator", "=>x", "(=>x", r"a=>\9"]:
        with pytest.raises(ConfigError):
            parse_replacement(bad)


RULES_TOML = """
ignore_paths = ["$.meta.*", "$..timestamp"]
unordered_paths = ["$.tags"]
ignore_headers = ["X-Build"]
compare_headers = ["server"]
tolerance = { absolute = 0.001, relative = 0.01 }

[[replace]]
pattern = '\\d+ms'
with = "Nms"
"""


def test_rules_file_toml_and_json_round_trip(tmp_path: Path) -> None:
    toml_file = tmp_path / "rules.toml"
    toml_file.write_text(RULES_TOML)
    rules = load_rules(toml_file)
    assert [p.text for p in rules.ignore_paths] == ["$.meta.*", "$..timestamp"]
    assert rules.abs_tolerance == 0.001 and rules.rel_tolerance == 0.01
    assert rules.header_policy("x-build") == "noise"
    assert rules.header_policy("Server") == "compare"
    assert rules.header_policy("date") == "skip"
    assert rules.header_policy("content-type") == "compare"
    assert rules.normalise_text("took 15ms") == "took Nms"
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps(rules.to_mapping()))
    assert load_rules(json_file).to_mapping() == rules.to_mapping()


def test_cli_strings_extend_the_file(tmp_path: Path) -> None:
    toml_file = tmp_path / "rules.toml"
    toml_file.write_text(RULES_TOML)
    rules = build_rules(toml_file, ignore_paths=["$.x"], tolerances=["5%"])
    assert [p.text for p in rules.ignore_paths][-1] == "$.x"
    assert rules.rel_tolerance == 0.05 and rules.abs_tolerance == 0.001


@pytest.mark.parametrize(
    "data,message",
    [
        ({"ignore_path": []}, "unknown key 'ignore_path'"),
        ({"ignore_paths": "$.a"}, "ignore_paths must be a list of strings"),
        ({"ignore_paths": ["a"]}, "must start with $"),
        ({"ignore_array_order": "yes"}, "true or false"),
        ({"tolerance": {"absolute": -1}}, "tolerance.absolute must be a number >= 0"),
        ({"tolerance": {"abs": 1}}, "unknown key 'abs'"),
        ({"tolerance": 1}, "tolerance must be a table"),
        ({"replace": [{"pattern": "("}]}, "replace #1 must have"),
        ({"replace": [{"pattern": "(", "with": ""}]}, "replace #1: bad replacement"),
        ([], "expected a table"),
    ],
)
def test_rules_validation(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        rules_from_mapping(data, "r.json")
    text = str(info.value)
    assert message in text and text.startswith("r.json") and "\n" not in text


def test_rules_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.json")
    broken = tmp_path / "broken.toml"
    broken.write_text("ignore_paths = [")
    with pytest.raises(ConfigError, match="broken.toml") as info:
        load_rules(broken)
    assert "\n" not in str(info.value)


def test_default_ignore_list_is_lowercase() -> None:
    assert all(h == h.lower() for h in DEFAULT_IGNORED_HEADERS)
