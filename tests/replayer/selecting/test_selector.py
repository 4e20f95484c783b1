"""The select step: window, sample, methods, filter; each drop counted, each record handled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from prometheus_client import REGISTRY

from replayer.models import Record, Response, Target
from replayer.pipeline import Pipeline
from replayer.selecting.eventfilter import compile_filter, event_to_flow, parse_filter
from replayer.selecting.selector import (
    SAFE_METHODS,
    SelectOptions,
    Selector,
    parse_methods,
    sample_point,
)
from replayer.sending.sender import MockTransport, OutgoingRequest, Sender
from schemas.codec import Codec
from tests.replayer.events import make_event
from trafficmirror.plumbing.errors import ConfigError

CODEC = Codec()


@pytest.mark.parametrize(
    ("text", "methods"),
    [
        ("GET,HEAD,OPTIONS", SAFE_METHODS),
        ("get, post", frozenset({"GET", "POST"})),
        ("ALL", None),
        ("all", None),
        ("M-SEARCH", frozenset({"M-SEARCH"})),
    ],
)
def test_methods_parse(text: str, methods: frozenset[str] | None) -> None:
    assert parse_methods(text) == methods


@pytest.mark.parametrize("text", ["", " , ", "GET,ALL", "GE T", "GET;POST", "GËT", "G1"])
def test_bad_methods_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_methods(text)


def test_the_sample_hash_is_the_same_in_every_process() -> None:
    """Not Python's hash(): that one is salted per process (PYTHONHASHSEED)."""
    keys = [f"10.0.0.{n}:{40000 + n}".encode() for n in range(20)]
    here = [sample_point(k) for k in keys]
    code = (
        "from replayer.selecting.selector import sample_point\n"
        f"print([sample_point(k) for k in {keys!r}])"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        assert eval(out) == here  # noqa: S307 (our own list of floats)
    assert len(set(here)) == 20 and all(0 <= p < 1 for p in here)


def test_the_sample_keeps_about_its_share_and_grows_by_adding() -> None:
    keys = [f"10.{n // 250}.{n % 250}.1:{n}".encode() for n in range(10_000)]

    def kept(pct: float) -> set[bytes]:
        selector = Selector(SelectOptions(sample_pct=pct))
        return {k for k in keys if selector.before_decode(k, None) is None}

    ten, quarter, every = kept(10), kept(25), kept(100)
    # Binomial spread at n=10,000: sd 0.3 % and 0.43 %; these bounds are > 3.5 sd.
    assert 880 <= len(ten) <= 1120
    assert 2350 <= len(quarter) <= 2650
    assert ten <= quarter  # a larger sample keeps every connection of a smaller one
    assert every == set(keys)
    assert Selector(SelectOptions(sample_pct=25)).before_decode(keys[0], None) == (
        None if keys[0] in quarter else "sample"
    )


def test_the_window_includes_since_and_excludes_until() -> None:
    selector = Selector(SelectOptions(since_ms=1000, until_ms=2000))
    assert selector.before_decode(b"k", 999) == "outside-window"
    assert selector.before_decode(b"k", 1000) is None
    assert selector.before_decode(b"k", 1999) is None
    assert selector.before_decode(b"k", 2000) == "outside-window"
    assert selector.before_decode(b"k", None) == "outside-window"
    assert Selector(SelectOptions(since_ms=1000)).before_decode(b"k", 10**15) is None
    assert Selector(SelectOptions(until_ms=1000)).before_decode(b"k", 0) is None
    assert Selector(SelectOptions()).before_decode(b"k", None) is None


def test_methods_then_filter_on_the_event() -> None:
    selector = Selector(SelectOptions(filter_expr="~u /api"))
    assert selector.after_decode(make_event(method="GET", path="/api/x")) is None
    assert selector.after_decode(make_event(method="get", path="/api/x")) is None
    assert selector.after_decode(make_event(method="POST", path="/api/x")) == "method"
    assert selector.after_decode(make_event(method="GET", path="/other")) == "filter"
    every = Selector(SelectOptions(methods=None))
    assert every.after_decode(make_event(method="DELETE")) is None


@pytest.mark.parametrize(
    ("expr", "matches"),
    [
        ("~m POST & ~u /api", True),
        ("~m GET", False),
        ("~u shop.example.com/api/items\\?page=2", True),
        ("~d shop.example.com", True),
        ("~h X-Trace", True),
        ("~hq Content-Type:\\s*application/json", True),
        # Case-sensitive under mitmproxy 11, not under 12: whatever mitmproxy says.
        ("~hq content-type", None),
        ("~hs Content-Type", True),
        ("~bq secret", True),
        ("~bs secret", False),
        ("~c 201", True),
        ("~c 500", False),
        ("~t json", True),
        ("~s & !~e", True),
        ("~src 10.9.8.7", True),
        ("!(~u /static | ~m HEAD)", True),
    ],
)
def test_filter_operators_see_what_the_event_recorded(expr: str, matches: bool | None) -> None:
    event = make_event(
        method="POST",
        path="/api/items?page=2",
        headers=[("Host", "shop.example.com"), ("X-Trace", "1"),
                 ("Content-Type", "application/json")],
        body=b'{"secret": 1}',
        client=("10.9.8.7", 5555),
        status=201,
    )  # fmt: skip
    if matches is None:  # mitmproxy's own answer on a flow with the same header
        from mitmproxy import flowfilter
        from mitmproxy.test import tflow

        flow = tflow.tflow()
        flow.request.headers.clear()
        flow.request.headers["Content-Type"] = "application/json"
        matches = bool(flowfilter.parse(expr)(flow))
    assert compile_filter(expr)(event) is matches


def test_errors_and_missing_responses_filter_like_mitmproxy() -> None:
    failed = make_event(status=None, error="connection refused")
    assert compile_filter("~e")(failed)
    assert compile_filter("~q")(failed)
    assert not compile_filter("~s")(failed)


@pytest.mark.parametrize("expr", ["", "   ", "~m", "~nosuch x", "(~u a", "~c notanumber"])
def test_a_bad_filter_is_one_line(expr: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_filter(expr)
    assert "\n" not in str(caught.value)


def test_dropped_records_are_handled_counted_and_never_sent() -> None:
    def skipped(reason: str) -> float:
        value = REGISTRY.get_sample_value("trafficmirror_replayer_skipped_total",
                                          {"reason": reason})  # fmt: skip
        return value or 0.0

    before = {r: skipped(r) for r in ("outside-window", "sample", "method", "filter")}
    sent: list[OutgoingRequest] = []

    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            sent.append(req)
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=2)
        options = SelectOptions(since_ms=1000, until_ms=5000, filter_expr="!~u /hidden")
        pipeline = Pipeline(codec=CODEC, target=Target.parse("http://s"), sender=sender,
                            selector=Selector(options))  # fmt: skip

        def rec(offset: int, stamp: int, **kw: object) -> Record:
            value = CODEC.encode(make_event(**kw)).value  # type: ignore[arg-type]
            return Record("t", 0, offset, b"c1", value, stamp)

        futures = [
            pipeline.handle(rec(0, 500)),
            pipeline.handle(rec(1, 1500, path="/kept")),
            pipeline.handle(rec(2, 2500, method="POST", body=b"x")),
            pipeline.handle(rec(3, 3500, path="/hidden")),
            pipeline.handle(Record("t", 0, 4, b"c1", b"not even an event", 9000)),
        ]
        results = await asyncio.gather(*futures)
        assert [(r.kind, r.detail) for r in results] == [
            ("skipped", "outside-window"), ("sent", None), ("skipped", "method"),
            ("skipped", "filter"), ("skipped", "outside-window"),
        ]  # fmt: skip
        assert pipeline.stats.handled == 5
        assert pipeline.stats.line() == (
            "consumed 5, sent 1, errors 0, skipped-truncated 0, skipped-filter 1, "
            "skipped-method 1, skipped-outside-window 2, undecodable 0"
        )
        await sender.aclose()

    asyncio.run(main())
    assert [r.path for r in sent] == ["/kept"]
    assert skipped("outside-window") - before["outside-window"] == 2
    assert skipped("method") - before["method"] == 1
    assert skipped("filter") - before["filter"] == 1


def test_the_selection_describes_itself_for_logs_and_summaries() -> None:
    assert SelectOptions().describe() == "methods GET, HEAD, OPTIONS"
    text = SelectOptions(since_ms=0, sample_pct=12.5, filter_expr="~u /api",
                         methods=None).describe()  # fmt: skip
    assert text == (
        "every method; window 1970-01-01T00:00:00.000+00:00 to open (exclusive); "
        "sample 12.5% of connections; filter '~u /api'"
    )


def test_the_reused_flow_carries_nothing_over_from_the_event_before() -> None:
    """compile_filter refills one flow; it must judge like a flow built afresh."""
    events = [
        make_event(method="POST", path="/api/a", body=b"secret", status=201,
                   trailers=[("X-Sum", "1")]),
        make_event(status=None, error="refused", path="/b"),
        make_event(method="GET", path="/api/c", client=("10.0.0.2", 1)),
        make_event(status=404, response_body=b"nope", path="/d"),
    ]  # fmt: skip
    for expr in ("~s", "~e", "~c 201", "~bq secret", "~bs nope", "~u /api", "~src 10.0.0.2",
                 "~m POST", "~q"):  # fmt: skip
        fresh = parse_filter(expr)
        reused = compile_filter(expr)
        for event in [*events, *reversed(events)]:
            assert reused(event) == bool(fresh(event_to_flow(event))), (expr, event["path"])
