"""Correlated IDs: a (production, shadow) pair the comparison is given counts as equal."""

from __future__ import annotations

from typing import Any, cast

from replayer.comparing.mapped import MappedValues, scalar_text
from replayer.comparing.noise import Rules
from replayer.comparing.responses import compare, compare_exchange
from schemas.records import HttpExchange
from tests.replayer.comparing.helpers import paths, resp
from tests.replayer.events import make_event

PAIRS = {("17", "903"), ("ord-a1", "ord-z9")}


def test_scalars_in_the_map_are_equal_others_still_differ() -> None:
    mapped = MappedValues(PAIRS)
    assert mapped.same(17, 903) and mapped.same("17", "903") and mapped.same("ord-a1", "ord-z9")
    assert not mapped.same(17, 904)  # a pair, not "any two IDs"
    assert not mapped.same(903, 17)  # and one way round
    assert not mapped.same(True, 903) and not mapped.same(None, "903")
    assert not mapped.same({"id": 17}, {"id": 903})
    assert scalar_text(2.5) == "2.5" and scalar_text(False) is None


def test_translate_replaces_whole_tokens_only() -> None:
    mapped = MappedValues({("17", "903"), ("170", "5")})
    assert mapped.translate("/orders/17") == "/orders/903"
    assert mapped.translate("/orders/170/items?order=17&x=1") == "/orders/5/items?order=903&x=1"
    # Not inside a longer token: dates, versions, other numbers, words.
    for text in ("2017-01-17", "v1.17", "1700", "abc17", "17_x", "x-17"):
        assert mapped.translate(text) == text
    assert not MappedValues({("5", "5"), ("", "x")})  # nothing to map


def test_json_body_differing_only_by_mapped_ids_matches() -> None:
    production = resp({"id": 17, "ref": "ord-a1", "href": "/orders/17", "total": 5})
    shadow = resp({"id": 903, "ref": "ord-z9", "href": "/orders/903", "total": 5})
    assert paths(compare(production, shadow)) == [
        ("body_json", "$.id"),
        ("body_json", "$.ref"),
        ("body_json", "$.href"),
    ]
    assert compare(production, shadow, mapped=MappedValues(PAIRS)) == []
    # A real regression next to a mapped ID is still found.
    wrong = resp({"id": 903, "ref": "ord-z9", "href": "/orders/903", "total": 6})
    assert paths(compare(production, wrong, mapped=MappedValues(PAIRS))) == [
        ("body_json", "$.total")
    ]


def test_headers_and_text_bodies() -> None:
    production = resp(b"order 17 created\n", headers=((b"Location", b"/orders/17"),))
    shadow = resp(b"order 903 created\n", headers=((b"Location", b"/orders/903"),))
    assert paths(compare(production, shadow)) == [("header", "location"), ("body_text", "line 1")]
    assert compare(production, shadow, mapped=MappedValues(PAIRS)) == []
    other = resp(b"order 904 created\n", headers=((b"Location", b"/orders/904"),))
    assert len(compare(production, other, mapped=MappedValues(PAIRS))) == 2


def test_compare_exchange_takes_the_pairs_of_each_side() -> None:
    event = cast(HttpExchange, make_event(status=200, response_body=b'{"id": 17, "ts": 1}'))
    shadow = resp({"id": 903, "ts": 1})
    baseline = resp({"id": 55, "ts": 1})
    assert paths(compare_exchange(event, shadow, Rules())) == [("body_json", "$.id")]
    assert compare_exchange(event, shadow, Rules(), equal_values=PAIRS) == []
    # With a baseline that created its own ID: without its pair, $.id is noise (it
    # differs between two copies of production); with it, the shadow's 903 is a
    # mismatch unless its own pair is known.
    diffs: Any = compare_exchange(event, shadow, Rules(), baseline)
    assert [(d.path, d.noise) for d in diffs] == [("$.id", True)]
    diffs = compare_exchange(event, shadow, Rules(), baseline, baseline_equal_values={("17", "55")})
    assert [(d.path, d.noise) for d in diffs] == [("$.id", False)]
    both = compare_exchange(
        event,
        shadow,
        Rules(),
        baseline,
        equal_values=PAIRS,
        baseline_equal_values={("17", "55")},
    )
    assert both == []
