"""Comparison of shadow and production responses, and the noise rules."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replayer.comparing.noise import (
    DEFAULT_IGNORED_HEADERS,
    JsonPattern,
    Rules,
    build_rules,
    format_path,
    load_rules,
    parse_replacement,
    parse_tolerance,
    rules_from_mapping,
)
from replayer.comparing.responses import (
    Difference,
    ResponseView,
    classify,
    compare,
    compare_exchange,
    decode_content,
    diff_json,
    diff_text,
)
from trafficmirror.plumbing.errors import ConfigError

JSON = (b"Content-Type", b"application/json")


def resp(
    body: bytes | Any = b"",
    status: int = 200,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    **kw: Any,
) -> ResponseView:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers = (JSON, *headers)
    return ResponseView(status=status, headers=headers, body=body, **kw)


def paths(diffs: list[Difference]) -> list[tuple[str, str]]:
    return [(d.kind, d.path) for d in diffs]


# -- status and headers -------------------------------------------------------------


def test_identical_responses_have_no_difference() -> None:
    r = resp({"a": 1}, headers=((b"X-A", b"1"),))
    assert compare(r, r) == []


def test_status_difference() -> None:
    (diff,) = compare(resp(status=200), resp(status=503))
    assert diff == Difference("status", "status", "200", "503")


def test_default_ignored_headers_are_not_compared() -> None:
    a = resp(headers=((b"Date", b"Mon"), (b"Server", b"a"), (b"X-Request-Id", b"1")))
    b = resp(
        headers=((b"date", b"Tue"), (b"Server", b"b"), (b"x-b3-traceid", b"9"), (b"ETag", b"x"))
    )
    assert compare(a, b) == []


def test_header_added_removed_changed_case_insensitive() -> None:
    a = resp(headers=((b"Cache-Control", b"no-store"), (b"X-Old", b"1"), (b"Vary", b"A")))
    b = resp(headers=((b"cache-control", b"private"), (b"X-New", b"2"), (b"VARY", b"A")))
    assert compare(a, b) == [
        Difference("header", "cache-control", "no-store", "private"),
        Difference("header", "x-old", "1", None),
        Difference("header", "x-new", None, "2"),
    ]


def test_duplicate_header_values_compare_in_order() -> None:
    a = resp(headers=((b"Link", b"<a>"), (b"Link", b"<b>")))
    b = resp(headers=((b"Link", b"<b>"), (b"Link", b"<a>")))
    (diff,) = compare(a, b)
    assert diff.path == "link"
    assert diff.production == '["<a>","<b>"]'


def test_header_rules_noise_and_compare() -> None:
    rules = build_rules(ignore_headers=["X-Build-*"], compare_headers=["Server"])
    a = resp(headers=((b"Server", b"v1"), (b"X-Build-Id", b"1")))
    b = resp(headers=((b"Server", b"v2"), (b"X-Build-Id", b"2")))
    assert compare(a, b, rules) == [
        Difference("header", "server", "v1", "v2"),
        Difference("header", "x-build-id", "1", "2", noise=True),
    ]


# -- JSON ------------------------------------------------------------------------------


def test_json_paths_added_removed_changed() -> None:
    a = {"user": {"name": "ann", "age": 3}, "items": [{"price": 1}, {"price": 2}], "gone": 1}
    b = {"user": {"name": "bob", "age": 3}, "items": [{"price": 1}, {"price": 5}], "new": None}
    assert [(d.path, d.production, d.shadow) for d in compare(resp(a), resp(b))] == [
        ("$.user.name", '"ann"', '"bob"'),
        ("$.items[1].price", "2", "5"),
        ("$.gone", "1", None),
        ("$.new", None, "null"),
    ]


def test_json_whitespace_and_key_order_do_not_matter() -> None:
    a = resp(b'{"a": 1, "b": [1, 2]}', headers=(JSON,))
    b = resp(b'{"b":[1,2],"a":1}', headers=(JSON, (b"Content-Length", b"17")))
    assert compare(a, b) == []


def test_json_types_are_strict() -> None:
    assert paths(diff_json({"a": True}, {"a": 1})) == [("body_json", "$.a")]
    assert paths(diff_json({"a": "1"}, {"a": 1})) == [("body_json", "$.a")]
    assert diff_json({"a": 1}, {"a": 1.0}) == []


def test_json_array_insert_is_one_difference() -> None:
    a = [{"id": 1}, {"id": 2}, {"id": 3}]
    b = [{"id": 0}, {"id": 1}, {"id": 2}, {"id": 3}]
    assert [(d.path, d.production, d.shadow) for d in diff_json(a, b)] == [
        ("$[0]", None, '{"id":0}')
    ]


def test_json_detected_without_content_type() -> None:
    a = resp(b'{"a": 1}')
    b = resp(b'{"a": 2}')
    assert paths(compare(a, b)) == [("body_json", "$.a")]


def test_json_odd_keys_are_quoted() -> None:
    assert paths(diff_json({"a b": 1}, {"a b": 2})) == [("body_json", '$["a b"]')]
    assert format_path(["x", 0, "content-type"]) == "$.x[0].content-type"


def test_ignore_paths_are_noise_and_reported_once() -> None:
    rules = build_rules(ignore_paths=["$.meta", "$.items[*].updated_at", "$..ts"])
    a = {"meta": {"x": 1, "y": 2}, "items": [{"updated_at": 1, "p": 1}], "deep": {"ts": 1}}
    b = {"meta": {"x": 2, "y": 3}, "items": [{"updated_at": 2, "p": 2}], "deep": {"ts": 2}}
    diffs = diff_json(a, b, rules)
    assert [(d.path, d.noise) for d in diffs] == [
        ("$.meta", True),
        ("$.items[0].updated_at", True),
        ("$.items[0].p", False),
        ("$.deep.ts", True),
    ]


def test_wildcard_children_and_added_keys_under_ignored_path() -> None:
    rules = build_rules(ignore_paths=["$.meta.*"])
    diffs = diff_json({"meta": {"a": 1}}, {"meta": {"a": 2, "b": 1}}, rules)
    assert [(d.path, d.noise) for d in diffs] == [("$.meta.a", True), ("$.meta.b", True)]


def test_numeric_tolerance() -> None:
    abs_rules = build_rules(tolerances=["0.01"])
    rel_rules = build_rules(tolerances=["1%"])
    assert diff_json({"p": 1.0}, {"p": 1.005}, abs_rules) == []
    assert diff_json({"p": 1.0}, {"p": 1.02}, abs_rules) != []
    assert diff_json({"p": 1000}, {"p": 1009}, rel_rules) == []
    assert diff_json({"p": 1000}, {"p": 1011}, rel_rules) != []


def test_array_order_globally_and_per_path() -> None:
    a = {"tags": ["a", "b", "c"], "list": [1, 2]}
    b = {"tags": ["c", "a", "b"], "list": [2, 1]}
    assert paths(diff_json(a, b, build_rules(unordered_paths=["$.tags"]))) != []
    assert [d.path for d in diff_json(a, b, build_rules(unordered_paths=["$.tags"]))] == [
        "$.list[0]",
        "$.list[1]",
    ]
    assert diff_json(a, b, build_rules(ignore_array_order=True)) == []
    # Integral floats equal ints in unordered arrays too (another language's encoder).
    assert diff_json([1.0, 2.0, 3], [2, 3.0, 1], build_rules(ignore_array_order=True)) == []


def test_unordered_array_reports_the_element_that_changed() -> None:
    rules = build_rules(ignore_array_order=True)
    a = [{"id": 1, "v": "x"}, {"id": 2, "v": "y"}, {"id": 3, "v": "z"}]
    b = [{"id": 3, "v": "z"}, {"id": 1, "v": "x"}, {"id": 2, "v": "CHANGED"}, {"id": 4, "v": "w"}]
    diffs = diff_json(a, b, rules)
    assert [(d.path, d.production, d.shadow) for d in diffs] == [
        ("$[1].v", '"y"', '"CHANGED"'),
        ("$[3]", None, '{"id":4,"v":"w"}'),
    ]


def test_changed_element_is_found_among_inserted_ones() -> None:
    a = [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]
    b = [{"id": 0, "x": 1}, {"id": 2, "n": "B"}, {"id": 1, "n": "a"}]
    diffs = diff_json(a, b, build_rules(ignore_array_order=True))
    assert [(d.path, d.production, d.shadow) for d in diffs] == [
        ("$[1].n", '"b"', '"B"'),
        ("$[0]", None, '{"id":0,"x":1}'),
    ]


def test_shifted_array_is_one_removal_and_one_addition() -> None:
    diffs = diff_json(list(range(3000)), list(range(1, 3001)))
    assert [(d.path, d.production, d.shadow) for d in diffs] == [
        ("$[0]", "0", None),
        ("$[2999]", None, "3000"),
    ]


def test_json_difference_count_is_capped() -> None:
    diffs = diff_json([2 * x for x in range(5000)], [2 * x + 1 for x in range(5000)], limit=20)
    assert len(diffs) == 20


def test_replacements_apply_before_json_parsing() -> None:
    rules = build_rules(replacements=[r"\d{4}-\d\d-\d\dT[0-9:.]+Z=><time>"])
    a = resp({"at": "2024-01-01T10:00:00.123Z", "n": 1})
    b = resp({"at": "2025-06-30T23:59:59Z", "n": 1})
    assert compare(a, b) != []
    assert compare(a, b, rules) == []


def test_values_are_truncated() -> None:
    (diff,) = diff_json({"a": "x" * 1000}, {"a": "y"})
    assert diff.production is not None and len(diff.production) == 200
    assert diff.production.endswith("…")


# -- text and binary -------------------------------------------------------------------


def test_text_reports_changed_lines() -> None:
    a = resp(b"one\ntwo\nthree\nfour\n", headers=((b"Content-Type", b"text/plain"),))
    b = resp(b"one\nTWO\nthree\nfour\nfive\n", headers=((b"Content-Type", b"text/plain"),))
    assert [(d.kind, d.path, d.production, d.shadow) for d in compare(a, b)] == [
        ("body_text", "line 2", "two", "TWO"),
        ("body_text", "line 5", None, "five"),
    ]


def test_text_hunks_are_capped() -> None:
    a = "\n".join(f"line{i}" for i in range(100))
    b = "\n".join(f"LINE{i}" if i % 2 else f"line{i}" for i in range(100))
    assert len(diff_text(a, b)) == 10


def test_text_replacements() -> None:
    rules = build_rules(replacements=[r"took \d+ms=>took Nms"])
    a = resp(b"ok, took 12ms", headers=((b"Content-Type", b"text/plain"),))
    b = resp(b"ok, took 99ms", headers=((b"Content-Type", b"text/plain"),))
    assert compare(a, b, rules) == []


def test_json_against_html_error_page_is_a_text_difference() -> None:
    a = resp({"ok": True})
    b = resp(b"<html>oops</html>", headers=((b"Content-Type", b"text/html"),))
    kinds = {d.kind for d in compare(a, b)}
    assert kinds == {"header", "body_text"}


def test_binary_by_size_and_hash() -> None:
    png = ((b"Content-Type", b"image/png"),)
    (diff,) = compare(resp(b"\x89PNG\x00\x01", headers=png), resp(b"\x89PNG\x00\x02", headers=png))
    assert diff.kind == "body_binary" and diff.path == "body"
    assert diff.production is not None and diff.production.startswith("6 bytes sha256:")
    assert compare(resp(b"\x00\x01", headers=png), resp(b"\x00\x01", headers=png)) == []


@pytest.mark.parametrize(
    "encode,coding",
    [
        (gzip.compress, b"gzip"),
        (zlib.compress, b"deflate"),
        (lambda d: zlib.compress(d)[2:-4], b"deflate"),  # raw deflate, as some servers send
    ],
)
def test_content_encoding_is_undone_before_comparing(encode: Any, coding: bytes) -> None:
    body = json.dumps({"a": [1, 2, 3]}).encode()
    a = resp(encode(body), headers=(JSON, (b"Content-Encoding", coding)))
    b = resp(body, headers=(JSON,))
    assert decode_content(a) == body
    # Only the header differs: the bodies are the same once decoded.
    assert paths(compare(a, b)) == [("header", "content-encoding")]


def test_brotli_when_available() -> None:
    brotli = pytest.importorskip("brotli")
    body = b'{"a": 1}'
    a = resp(brotli.compress(body), headers=(JSON, (b"Content-Encoding", b"br")))
    assert decode_content(a) == body


def test_undecodable_content_compares_raw() -> None:
    bad = resp(b"not gzip", headers=((b"Content-Encoding", b"gzip"),))
    assert decode_content(bad) == b"not gzip"


def test_truncated_production_body_compares_prefix_and_length() -> None:
    full = b"x" * 100
    prod = resp(full[:10], body_truncated=True, body_length=100)
    assert compare(prod, resp(full)) == []
    (diff,) = compare(prod, resp(full + b"y"))
    assert diff.kind == "body_binary"
    streamed = resp(b"", body_truncated=True, body_length=-1)
    assert compare(streamed, resp(b"anything")) == []


# -- baseline --------------------------------------------------------------------------


def test_classify_marks_differences_the_baseline_also_has() -> None:
    prod = resp({"ts": 1, "meta": {"a": 1}, "name": "x"})
    shadow = resp({"ts": 2, "meta": {"a": 2}, "name": "y"})
    baseline = resp({"ts": 3, "meta": {"a": 3, "b": 1}, "name": "x"})
    diffs = classify(compare(prod, shadow), compare(prod, baseline))
    assert [(d.path, d.noise) for d in diffs] == [
        ("$.ts", True),
        ("$.meta.a", True),
        ("$.name", False),
    ]
    # A baseline difference at an ancestor covers everything below it.
    covering = [Difference("body_json", "$.meta", "1", "2")]
    (meta,) = classify([Difference("body_json", "$.meta.a", "1", "2")], covering)
    assert meta.noise
    (other,) = classify([Difference("body_json", "$.metadata", "1", "2")], covering)
    assert not other.noise


def event_with(response: ResponseView | None) -> dict[str, Any]:
    if response is None:
        return {"response": None, "error": "connection reset"}
    flat = [x for pair in response.headers for x in pair]
    return {
        "response": {
            "status": response.status,
            "reason": b"OK",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": flat,
                "body": response.body,
                "body_truncated": False,
                "body_length": len(response.body),
                "trailers": None,
            },
        }
    }


def test_compare_exchange_reads_the_event_and_uses_the_baseline() -> None:
    prod = resp({"id": 1, "ts": 1})
    event = event_with(prod)
    assert ResponseView.from_event(event) == replace(prod, body_length=len(prod.body))
    shadow = resp({"id": 2, "ts": 2})
    baseline = resp({"id": 1, "ts": 3})
    diffs = compare_exchange(event, shadow, Rules(), baseline)
    assert [(d.path, d.noise) for d in diffs] == [("$.id", False), ("$.ts", True)]
    assert compare_exchange(event_with(None), shadow) == []


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


def test_response_of_client_parts() -> None:
    r = ResponseView.of(200, [("Content-Type", "application/json"), (b"X-Raw", b"\xff")], b"{}")
    assert r.headers == ((b"Content-Type", b"application/json"), (b"X-Raw", b"\xff"))
    assert r.header_values("content-type") == [b"application/json"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=3), children, max_size=5)
    ),
    max_leaves=30,
)


def json_equal(a: Any, b: Any) -> bool:
    """Reference equality: numbers by value (1 == 1.0), booleans never equal to numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


@settings(max_examples=150, deadline=None)
@given(json_values, json_values)
def test_json_diff_is_empty_exactly_when_documents_are_equal(a: Any, b: Any) -> None:
    assert diff_json(a, a) == []
    assert (diff_json(a, b) == []) == json_equal(a, b)
    assert (diff_json([a, 1], [b, 1.0]) == []) == json_equal(a, b)


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, max_size=8), st.randoms())
def test_ignoring_array_order_ignores_any_permutation(items: list[Any], rnd: Any) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert diff_json({"a": items}, {"a": shuffled}, build_rules(unordered_paths=["$.a"])) == []
