"""The chain: conditions, names of what changed, Content-Length, and what makes it skip."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from replayer.models import Outcome, OutgoingRequest, Response, Skipped
from replayer.transforming.chain import Chain, entry, finish
from replayer.transforming.step import TransformContext
from tests.replayer.transforming.helpers import chain_of, context, event, request_of, run

HEADER_OF = {
    "only-get": "Get",
    "only-api": "Api",
    "only-orders-glob": "Glob",
    "only-shop": "Shop",
    "only-api-port": "Api-Port",
    "only-baseline": "Baseline",
}
CONDITIONAL = """\
  - name: only-get
    when: {method: get}
    set_header: {name: X-Get, value: "1"}
  - name: only-api
    when: {path: '^/api/'}
    set_header: {name: X-Api, value: "1"}
  - name: only-orders-glob
    when: {path_glob: '/api/orders/*'}
    set_header: {name: X-Glob, value: "1"}
  - name: only-shop
    when: {authority: shop.example.com}
    set_header: {name: X-Shop, value: "1"}
  - name: only-api-port
    when: {authority: "api.example.com:8443"}
    set_header: {name: X-Api-Port, value: "1"}
  - name: only-baseline
    apply_to: baseline
    set_header: {name: X-Baseline, value: "1"}
"""


@pytest.mark.parametrize(
    ("method", "path", "authority", "role", "applied"),
    [
        ("GET", "/api/orders/17?x=/api/", "shop.example.com", "shadow",
         ["only-get", "only-api", "only-orders-glob", "only-shop"]),
        ("POST", "/other?/api/", "SHOP.example.com:80", "shadow", ["only-shop"]),
        ("GET", "/api/orders", "api.example.com:8443", "baseline",
         ["only-get", "only-api", "only-api-port", "only-baseline"]),
        ("GET", "/", "api.example.com:8444", "shadow", ["only-get"]),
    ],
)  # fmt: skip
def test_conditions_pick_the_rules_that_apply(
    method: str, path: str, authority: str, role: str, applied: list[str]
) -> None:
    ev = event(method=method, path=path, authority=authority)
    ctx = context(ev, role=role)  # type: ignore[arg-type]
    out = run(chain_of(CONDITIONAL), request_of(ev), ctx)
    assert ctx.applied == applied
    added = sorted(
        n for n, _ in out.headers if n.startswith("X-") and n != "X-Trafficmirror-Replay"
    )
    assert added == sorted("X-" + HEADER_OF[name] for name in applied)


def test_a_chain_that_changes_nothing_returns_the_same_request() -> None:
    ev = event(method="POST", authority="other.example.com")
    request = request_of(ev)
    ctx = context(ev)
    assert run(chain_of(CONDITIONAL), request, ctx) is request
    assert ctx.applied == []


class Broken:
    name = "broken"

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        raise KeyError("a bug")


class Renamer:
    """Lists finer names itself, like correlation does."""

    name = "renamer"

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        context.applied.append("rule-a")
        return replace(request, path=request.path + "x")


def test_a_failing_step_skips_the_record_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ev = event()
    chain = Chain([entry(Broken())])
    for _ in range(3):
        with pytest.raises(Skipped) as caught:
            run(chain, request_of(ev), context(ev))
        assert caught.value.reason == "transform"
        assert str(caught.value) == "broken failed: KeyError"
    assert caplog.text.count("transform broken raised KeyError") == 1


def test_a_step_that_lists_names_itself_is_not_listed_again() -> None:
    ev = event()
    ctx = context(ev)
    run(Chain([entry(Renamer())]), request_of(ev), ctx)
    assert ctx.applied == ["rule-a"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "GE T"}, "the method became 'GE T', not a token"),
        ({"path": "/a b"}, "the path became '/a b', not a request path"),
        ({"path": "relative"}, "the path became 'relative', not a request path"),
        ({"headers": (("Bad Name", "x"),)}, "a header name became 'Bad Name', not a token"),
        ({"headers": (("X", "a\r\nInjected: 1"),)}, "header 'X' got a value with CR, LF or NUL"),
    ],
)
def test_a_request_that_cannot_be_written_is_skipped(
    change: dict[str, object], message: str
) -> None:
    original = request_of(event())
    with pytest.raises(Skipped) as caught:
        finish(replace(original, **change), original)  # type: ignore[arg-type]
    assert (caught.value.reason, str(caught.value)) == ("transform", message)


def test_content_length_is_put_right_or_added_for_a_changed_body() -> None:
    original = request_of(event(method="POST", body=b"abc", headers=[("Content-Length", "3")]))
    assert finish(replace(original, body=b"abcdef"), original).header("Content-Length") == "6"
    bare = request_of(event(method="POST", body=b"", headers=[("X", "1")]))
    assert finish(replace(bare, body=b"12345"), bare).header("Content-Length") == "5"


class Learner:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []

    def observe(self, context: TransformContext, response: Response | None) -> None:
        self.seen.append((context.event["id"], response.status if response else None))
        raise RuntimeError("observer bug")


def test_observers_learn_each_outcome_and_a_failing_one_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    learner = Learner()
    chain = Chain([], [learner])
    ev = event(exchange_id="ex-obs")
    request = request_of(ev)
    caplog.set_level(logging.WARNING)
    chain.observe(context(ev), Outcome(request, Response(201), None, 0.0, 0.0))
    chain.observe(context(ev), Outcome(request, None, "timeout", 0.0, 0.0))
    assert learner.seen == [("ex-obs", 201), ("ex-obs", None)]
    assert caplog.text.count("raised RuntimeError") == 1


def test_steps_may_await() -> None:
    class Slow:
        name = "slow"

        async def apply(
            self, request: OutgoingRequest, context: TransformContext
        ) -> OutgoingRequest:
            await asyncio.sleep(0)
            return replace(request, headers=(*request.headers, ("X-Slow", "1")))

    ev = event()
    ctx = context(ev)
    assert run(Chain([entry(Slow())]), request_of(ev), ctx).header("X-Slow") == "1"
    assert ctx.applied == ["slow"]
