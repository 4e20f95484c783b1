"""The fused chain makes the same requests, names and skips as the chain step by step."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from replayer.models import Outcome, Response, Skipped, Target
from replayer.transforming.jwtresign import JwtResigner
from replayer.transforming.loader import parse_text
from replayer.transforming.stage import Transformer
from tests.replayer.transforming.helpers import event, request_of

SECRET = "fused-test-secret-0123456789abcdef0123"  # noqa: S105 (a test key)
TARGET = Target.parse("http://shadow:8080")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user: str) -> str:
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"Bearer {header}.{_b64(json.dumps({'sub': user}).encode())}."


#: The bench row's file (bench/replaying/transforms.py) and variations of its rules.
BENCH = """\
rules:
  - name: shadow-marker
    set_header: {name: X-Shadow, value: bench}
  - name: no-cookie
    remove_header: Cookie
  - name: agent
    replace_header: {name: User-Agent, pattern: 'bench/(\\d+)', with: 'bench-shadow/\\1'}
  - name: api-v2
    replace_path: {pattern: '^/api/', with: '/api/v2/'}
  - name: more-fields
    replace_query: {pattern: 'fields=name,price', with: 'fields=name,price,tags'}
credentials:
  - name: shop-jwt
    jwt_resign: {algorithm: HS256, key: '${SECRET}'}
correlate:
  - name: order-id
    response_json: $.id
"""
PATHS = """\
rules:
  - name: drop-query
    replace_query: {pattern: '^only=1$', with: ''}
  - name: marker
    set_header: {name: X-Shadow, value: "1"}
  - name: question
    replace_path: {pattern: '/ask/', with: '/ask?x=/'}
  - name: spaces
    replace_path: {pattern: '/bad/', with: '/b d/'}
  - name: query-again
    replace_query: {pattern: 'x=', with: 'y='}
credentials:
  - name: jwt
    jwt_resign: {algorithm: HS256, key: '${SECRET}', header: X-Token, prefix: ''}
"""

ONE_HEADER = """\
rules:
  - name: set-a
    set_header: {name: X-A, value: "bench/1"}
  - name: agent-a
    replace_header: {name: x-a, pattern: 'bench/(\\d+)', with: 'shadow/\\1'}
  - name: drop-a
    remove_header: X-B
  - name: set-b
    set_header: {name: X-B, value: "2"}
credentials:
  - name: jwt-1
    jwt_resign: {algorithm: HS256, key: '${SECRET}'}
  - name: jwt-2
    jwt_resign: {algorithm: HS256, key: '${SECRET}', header: X-Token, prefix: ''}
"""

H = tuple[tuple[str, str], ...]
BASE: H = (("Host", "shop.example.com"), ("User-Agent", "bench/7"), ("Accept", "*/*"))
CASES: dict[str, tuple[str, list[tuple[str, H]]]] = {
    "bench-traffic": (
        BENCH,
        [
            (
                "/api/orders/100001/items/3?fields=name,price",
                (*BASE, ("Authorization", token("u1"))),
            ),
            (
                "/api/orders/100001/items/4?fields=name,price",
                (*BASE, ("Authorization", token("u1"))),
            ),
            ("/api/orders/100001?fields=x", (*BASE, ("Cookie", "a=1"), ("Cookie", "b=2"))),
        ],
    ),
    "bench-odd-headers": (
        BENCH,
        [
            ("/api/orders/100001", (("X-Shadow", "bench"), *BASE)),
            ("/other", (("x-shadow", "bench"), ("X-SHADOW", "other"), *BASE)),
            ("/other", (("X-Shadow", "old"), ("User-Agent", "bench/1"), ("User-Agent", "x"))),
            ("/", (*BASE, ("Authorization", "Basic abc"), ("authorization", token("u2")))),
            ("/", (("Cookie", "c"),)),
            ("/", ()),
        ],
    ),
    "one-header-many-rules": (
        ONE_HEADER,
        [
            ("/", (("X-A", "x"), ("X-B", "1"), ("Authorization", token("u5")))),
            ("/", (("x-a", "bench/1"), ("X-A", "y"), ("X-B", "1"), ("x-b", "2"))),
            ("/", (("X-Token", token("u6").removeprefix("Bearer ")), ("X-Token", "no"))),
            ("/", (("Authorization", token("u7")), ("authorization", token("u8")))),
        ],
    ),
    "paths": (
        PATHS,
        [
            ("/a?only=1", (("X-Token", token("u3").removeprefix("Bearer ")),)),
            ("/a?only=2", (("X-Shadow", "1"),)),
            ("/ask/me", BASE),
            ("/ask/me?x=1", BASE),
            ("/bad/path", (("X-Token", token("u4").removeprefix("Bearer ")),)),
            ("/fine", (("X-Token", "not a jwt"),)),
        ],
    ),
}


def transformer(yaml: str) -> Transformer:
    options = parse_text(yaml, "t.yaml", {"SECRET": SECRET})
    return Transformer(options, TARGET)


def replay(fused: bool, yaml: str, requests: list[tuple[str, H]]) -> list[tuple[Any, ...]]:
    stage = transformer(yaml)
    chain = stage.shadow
    assert chain is not None
    assert chain._fused is not None  # every case here is a fusable file
    if not fused:
        chain._fused = None
    seen: list[tuple[Any, ...]] = []
    for number, (path, headers) in enumerate(requests):
        # The first exchange of the connection created order 100001; the shadow says 1.
        ev = event(
            path=path,
            headers=list(headers),
            response_body=b'{"id":100001}',
            exchange_id=f"ex-{number}",
        )
        prepared = stage.prepare(chain, b"c1", ev, "shadow")
        request = request_of(ev)
        try:
            sent = asyncio.run(prepared.before(request))
        except Skipped as skipped:
            seen.append(("skipped", skipped.reason, str(skipped), list(prepared.context.applied)))
            continue
        seen.append(
            (
                sent.method,
                sent.path,
                sent.headers,
                sent.body,
                sent.target,
                sent is request,
                list(prepared.context.applied),
                sorted(prepared.context.equal_values),
            )
        )
        answer = Response(200, (("Content-Type", "application/json"),), b'{"id":1}')
        prepared.after(Outcome(sent, answer, None, 0.0, 0.001))
    jwt = [step for step in chain.steps if isinstance(step, JwtResigner)]
    seen.append(("jwt counts", [step.counts for step in jwt]))
    return seen


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_chain_sends_what_the_chain_step_by_step_sends(case: str) -> None:
    yaml, requests = CASES[case]
    assert replay(True, yaml, requests) == replay(False, yaml, requests)


def test_the_bench_file_is_fused_and_changes_what_it_should() -> None:
    yaml, requests = CASES["bench-traffic"]
    first, second = replay(True, yaml, requests[:2])[:2]
    assert first[1] == "/api/v2/orders/100001/items/3?fields=name,price,tags"
    assert second[1] == "/api/v2/orders/1/items/4?fields=name,price,tags"
    assert second[6] == ["order-id", "shadow-marker", "agent", "api-v2", "more-fields", "shop-jwt"]
    names = [name.lower() for name, _ in second[2]]
    assert names[-1] == "x-shadow" and "cookie" not in names
    assert ("User-Agent", "bench-shadow/7") in second[2]


@pytest.mark.parametrize(
    "rules",
    [
        "  - name: a\n    replace_body: {pattern: a, with: b}\n",
        "  - name: a\n    json_set: {path: $.a, value: 1}\n",
        "  - name: a\n    when: {method: GET}\n    remove_header: Cookie\n",
    ],
    ids=["body-rule", "json-rule", "conditional-rule"],
)
def test_chains_that_cannot_fuse_run_step_by_step(rules: str) -> None:
    chain = transformer("rules:\n" + rules).shadow
    assert chain is not None and chain._fused is None
