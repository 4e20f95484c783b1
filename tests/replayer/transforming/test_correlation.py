"""Value correlation: learn (production, shadow) pairs from responses, replace them later."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from replayer.models import OutgoingRequest, Response, Target
from replayer.transforming.config import Correlate
from replayer.transforming.correlation import Correlation, Limits, build_correlation
from replayer.transforming.step import TransformContext
from replayer.transforming.substitute import Finder, Learned, _path
from schemas.records import HttpExchange
from tests.replayer.events import make_event
from trafficmirror.plumbing.jsonpath import JsonPattern

TARGET = Target("http", "127.0.0.1:9")
KEY = b"10.0.0.1:50000"
ORDER_ID = Correlate("order-id", response_json=JsonPattern.parse("$.id"))


def ctx(key: bytes | None = KEY, **event: Any) -> TransformContext:
    return TransformContext(key=key, event=cast(HttpExchange, make_event(**event)))


def request(
    path: str = "/",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    method: str = "GET",
) -> OutgoingRequest:
    return OutgoingRequest(method, TARGET, path, headers, body, "ex")


def json_response(doc: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(200, (("Content-Type", "application/json"), *headers), json.dumps(doc).encode())


def learn(
    correlation: Correlation,
    production: Any,
    shadow: Any,
    key: bytes | None = KEY,
    prod_headers: list[tuple[str, str]] | None = None,
    shadow_headers: tuple[tuple[str, str], ...] = (),
) -> TransformContext:
    body = production if isinstance(production, bytes) else json.dumps(production).encode()
    context = ctx(key, method="POST", path="/orders", response_body=body)
    if prod_headers is not None:
        flat = context.event["response"]["message"]["headers"]  # type: ignore[index]
        for name, value in prod_headers:
            flat += [name.encode(), value.encode()]
    shadow_body = shadow if isinstance(shadow, bytes) else json.dumps(shadow).encode()
    correlation.observe(context, Response(201, shadow_headers, shadow_body))
    return context


def apply(correlation: Correlation, req: OutgoingRequest, key: bytes | None = KEY) -> Any:
    context = ctx(key)
    return asyncio.run(correlation.apply(req, context)), context


def test_learned_id_replaces_whole_path_segments_query_values_json_and_headers() -> None:
    correlation = Correlation((ORDER_ID,))
    learned = learn(correlation, {"id": 17, "item": "book"}, {"id": 903, "item": "book"})
    assert learned.equal_values == {("17", "903")}  # this exchange's comparison knows it
    body = json.dumps({"order_id": 17, "ref": "17", "note": "order 17", "qty": 170}).encode()
    original = request(
        "/orders/17/items/170?order=17&year=2017&x=a17",
        (("Host", "shop"), ("X-Order", "17"), ("Content-Length", str(len(body)))),
        body,
        "POST",
    )
    changed, context = apply(correlation, original)
    assert changed.path == "/orders/903/items/170?order=903&year=2017&x=a17"
    assert changed.headers[:2] == (("Host", "shop"), ("X-Order", "903"))
    assert json.loads(changed.body) == {
        "order_id": 903,
        "ref": "903",
        "note": "order 17",
        "qty": 170,
    }
    assert changed.headers[2] == ("Content-Length", str(len(changed.body)))
    assert context.applied == ["order-id"]
    assert context.equal_values == {("17", "903")}
    assert correlation.counts.learned == 1 and correlation.counts.substituted == 1


def test_nothing_to_replace_returns_the_same_request() -> None:
    correlation = Correlation((ORDER_ID,))
    learn(correlation, {"id": 17}, {"id": 903})
    untouched = request("/orders/170", (("X-Year", "2017"),), b'{"a": 1}')
    same, context = apply(correlation, untouched)
    assert same is untouched and context.applied == []
    # The comparison still learns every pair known for the connection.
    assert context.equal_values == {("17", "903")}


def test_pairs_belong_to_their_recorded_connection() -> None:
    correlation = Correlation((ORDER_ID,))
    learn(correlation, {"id": 17}, {"id": 903}, key=b"a")
    learn(correlation, {"id": 17}, {"id": 555}, key=b"b")
    assert apply(correlation, request("/orders/17"), key=b"a")[0].path == "/orders/903"
    assert apply(correlation, request("/orders/17"), key=b"b")[0].path == "/orders/555"
    assert apply(correlation, request("/orders/17"), key=b"c")[0].path == "/orders/17"
    # Without a key there is no connection to follow: nothing is learned or replaced.
    learn(correlation, {"id": 18}, {"id": 904}, key=None)
    assert apply(correlation, request("/orders/18"), key=None)[0].path == "/orders/18"
    assert correlation.counts.learned == 2


def test_equal_or_missing_values_teach_nothing() -> None:
    correlation = Correlation((ORDER_ID,))
    assert learn(correlation, {"id": 17}, {"id": 17}).equal_values == set()  # equal bodies: skipped
    assert learn(correlation, {"id": 17, "a": 1}, {"id": 17, "a": 2}).equal_values == {("17", "17")}
    learn(correlation, {"id": 17}, {"other": 1})
    learn(correlation, {"id": 17}, {"id": None})
    learn(correlation, {"id": {"nested": 1}}, {"id": {"nested": 2}})
    learn(correlation, b"not json", {"id": 2})
    learn(correlation, {"id": "x" * 600}, {"id": "y"})  # too long to be an ID
    context = ctx(method="POST", path="/orders", status=None)  # production failed
    correlation.observe(context, json_response({"id": 903}))
    correlation.observe(ctx(response_body=b'{"id": 17}'), None)  # the target failed
    assert correlation.counts.learned == 0 and correlation.size == (0, 0, 0)


def test_shadow_string_ids_and_wildcard_paths_pair_by_position() -> None:
    rule = Correlate("item-id", response_json=JsonPattern.parse("$.items[*].id"))
    correlation = Correlation((rule,))
    learn(
        correlation,
        {"items": [{"id": 1}, {"id": "a-1"}, {"id": 3}]},
        {"items": [{"id": "u-9"}, {"id": "b-2"}]},
    )
    body = json.dumps([1, "a-1", 3]).encode()
    changed, _ = apply(correlation, request("/x/1/a-1/3", body=body))
    assert changed.path == "/x/u-9/b-2/3"
    assert json.loads(changed.body) == ["u-9", "b-2", 3]  # a string ID stays a string


def test_location_header_learns_the_whole_value_and_the_differing_segment() -> None:
    rule = Correlate("order-location", response_header="location")
    correlation = Correlation((rule,))
    context = learn(
        correlation,
        b"",
        b"",
        prod_headers=[("Location", "https://shop.example.com/orders/17")],
        shadow_headers=(("location", "/orders/903"),),
    )
    assert context.equal_values == {
        ("https://shop.example.com/orders/17", "/orders/903"),
        ("17", "903"),
    }
    changed, _ = apply(
        correlation,
        request("/orders/17", (("Referer", "https://shop.example.com/orders/17"),)),
    )
    assert changed.path == "/orders/903"
    assert changed.headers == (("Referer", "/orders/903"),)


def test_regex_on_text_bodies_including_gzip() -> None:
    rule = Correlate("ticket", response_regex=re.compile(r"ticket (\w+)"))
    correlation = Correlation((rule,))
    production = gzip.compress(b"your ticket T17 and ticket T18")
    context = ctx(method="POST", response_body=production)
    context.event["response"]["message"]["headers"] += [  # type: ignore[index]
        b"Content-Encoding",
        b"gzip",
    ]
    correlation.observe(context, Response(200, (), b"your ticket S1 and ticket S2"))
    assert context.equal_values == {("T17", "S1"), ("T18", "S2")}
    changed, _ = apply(correlation, request("/t/T18?id=T17"))
    assert changed.path == "/t/S2?id=S1"


def test_a_newer_pair_for_the_same_value_wins() -> None:
    correlation = Correlation((ORDER_ID,))
    learn(correlation, {"id": 17}, {"id": 903})
    learn(correlation, {"id": 17}, {"id": 904})
    assert apply(correlation, request("/orders/17"))[0].path == "/orders/904"
    assert correlation.size[1] == 1


def test_memory_is_bounded_per_key_and_overall_and_evictions_counted() -> None:
    correlation = Correlation((ORDER_ID,), Limits(values_per_key=3, values=5))
    for n in range(5):
        learn(correlation, {"id": n}, {"id": 1000 + n}, key=b"a")
    assert correlation.size[:2] == (1, 3) and correlation.counts.evicted == 2
    # The oldest pairs of the key went first.
    assert apply(correlation, request("/o/0"), key=b"a")[0].path == "/o/0"
    assert apply(correlation, request("/o/4"), key=b"a")[0].path == "/o/1004"
    for n in range(3):
        learn(correlation, {"id": n}, {"id": 2000 + n}, key=b"b")
    # Over 5 pairs overall: the least recently used key (a) is dropped whole.
    assert correlation.size[:2] == (1, 3) and correlation.counts.evicted == 5
    assert apply(correlation, request("/o/4"), key=b"a")[0].path == "/o/4"
    by_bytes = Correlation((ORDER_ID,), Limits(bytes_per_key=600))
    for n in range(10):
        learn(by_bytes, {"id": f"p{n}" * 20}, {"id": f"s{n}" * 20}, key=b"a")
    keys, values, size = by_bytes.size
    assert keys == 1 and 1 <= values < 10 and size <= 600
    assert by_bytes.counts.evicted == 10 - values


def test_build_correlation_returns_one_object_as_step_and_observer() -> None:
    step, observer = build_correlation((ORDER_ID,))
    assert step is observer and step.name == "correlate"


def test_encoded_values_and_escaped_json_are_still_found() -> None:
    correlation = Correlation((ORDER_ID,))
    learn(correlation, {"id": "a b/c"}, {"id": "x y"})
    changed, _ = apply(correlation, request("/o/a%20b%2Fc?ref=a+b%2Fc&n=1"))
    assert changed.path == "/o/x%20y?ref=x%20y&n=1"
    escaped = b'{"ref": "a b\\/c"}'  # JSON may escape the slash
    changed, _ = apply(correlation, request("/", body=escaped))
    assert json.loads(changed.body) == {"ref": "x y"}
    plain = request("/o/other?ref=zzz", (("X-A", "1"),), b'{"ref": "a b"}')
    assert apply(correlation, plain)[0] is plain


_PIECES = st.sampled_from(["17", "170", "7", "1", "a-1", "x", "a", "b", "ab", "a/b", ""])


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(_PIECES.filter(bool), st.sampled_from(["S", "T", "9 9"]), max_size=4),
    segments=st.lists(_PIECES, min_size=1, max_size=6),
    query=st.lists(st.tuples(st.sampled_from(["q", "id", "17"]), _PIECES), max_size=3),
)
def test_the_quick_path_finds_exactly_what_splitting_finds(
    values: dict[str, str], segments: list[str], query: list[tuple[str, str]]
) -> None:
    mapping = {k: Learned.of(v, False, "r") for k, v in values.items()}
    raw = "/" + "/".join(segments)
    if query:
        raw += "?" + "&".join(f"{k}={v}" for k, v in query)
    slow: list[str] = []
    quick: list[str] = []
    finder = Finder(mapping)
    assert _path(raw, mapping, quick, finder) == _path(raw, mapping, slow)
    assert quick == slow
    if finder.one_scan and "%" not in raw and "+" not in raw:  # what substitute_draft takes
        scanned: list[str] = []
        assert finder.target(raw, scanned) == _path(raw, mapping, [])
        assert scanned == slow


def test_a_value_with_a_line_break_is_never_put_in_a_header() -> None:
    correlation = Correlation((ORDER_ID,))
    learn(correlation, {"id": "o-17"}, {"id": "o-\r\n903"})
    changed, _ = apply(correlation, request("/o/o-17", (("X-Order", "o-17"),)))
    assert changed.path == "/o/o-%0D%0A903" and changed.headers == (("X-Order", "o-17"),)
