"""Structural differences of JSON bodies: paths, ignore rules, tolerance, arrays."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from replayer.comparing.diff import diff_json
from replayer.comparing.noise import build_rules, format_path
from replayer.comparing.responses import compare
from tests.replayer.comparing.helpers import JSON, paths, resp

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
