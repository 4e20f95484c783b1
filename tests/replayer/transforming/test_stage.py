"""The stage in the pipeline: routes, chains per role, skips, results naming what applied."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from replayer.models import OutgoingRequest, Record, Response, Result, Target
from replayer.pipeline import Pipeline
from replayer.results.build import ResultMessage
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.sending.sender import MockTransport, Sender
from replayer.transforming.chain import Chain, entry
from replayer.transforming.loader import parse_text
from replayer.transforming.stage import Transformer
from replayer.transforming.step import TransformContext
from schemas.codec import Codec
from schemas.records import ReplayResult
from tests.replayer.events import make_event

CODEC = Codec()
RESULTS = Codec("replay_result")


class Collected:
    """A results publisher that keeps the decoded results."""

    def __init__(self) -> None:
        self.results: list[ReplayResult] = []

    def send(self, message: ResultMessage) -> bool:
        self.results.append(RESULTS.decode_result(message.value))
        return True

    def close(self, timeout: float = 10.0) -> None:
        pass


def record(offset: int, key: bytes | None = b"c1", **event: Any) -> Record:
    return Record("t", 0, offset, key, CODEC.encode(make_event(**event)).value, 1_700_000_000_000)


def replay(
    yaml: str,
    records: list[Record],
    *,
    target: str | None = "http://default:9000",
    baseline: str | None = None,
    handler: Any = None,
    customize: Any = None,
) -> tuple[list[Result], list[OutgoingRequest], Collected, Pipeline]:
    """Run `records` through a pipeline with the transforms of `yaml`; what was sent, by whom."""
    options = parse_text(yaml, "t.yaml", {"TOKEN": "t0k"})
    default = Target.parse(target) if target else None
    seen: list[OutgoingRequest] = []

    async def echo(request: OutgoingRequest) -> Response:
        seen.append(request)
        return Response(200, (("Content-Type", "application/json"),), b"{}")

    collected = Collected()

    async def main() -> tuple[list[Result], Pipeline]:
        sender = Sender(MockTransport(handler or echo), concurrency=4)
        comparison = Comparison(
            ComparisonOptions(baseline=baseline),
            topic="t",
            target=default,
            publisher=collected,
            replayer_id="r",
        )
        transformer = Transformer(options, default, baseline=baseline is not None)
        if customize is not None:
            customize(transformer)
        pipeline = Pipeline(
            codec=CODEC,
            target=default,
            sender=sender,
            comparison=comparison,
            transformer=transformer,
        )
        results = await asyncio.gather(*(pipeline.handle(r) for r in records))
        await sender.aclose()
        await transformer.aclose()
        return list(results), pipeline

    results, pipeline = asyncio.run(main())
    return results, seen, collected, pipeline


MAP = """\
target_map:
  shop.example.com: http://shop-shadow:8081
  api.example.com: http://api-shadow:8082
  prod.example.com: http://prod.example.com
"""


def test_a_target_map_routes_each_authority_and_skips_the_rest_without_a_target() -> None:
    records = [
        record(0, authority="shop.example.com", path="/cart"),
        record(1, authority="api.example.com:8080", path="/v1"),
        record(2, authority="other.example.com", path="/x"),
        record(3, authority="prod.example.com", path="/y"),  # mapped to itself: production
    ]
    results, seen, collected, pipeline = replay(MAP, records, target=None)
    assert [(r.kind, r.detail) for r in results] == [
        ("sent", None),
        ("sent", None),
        ("skipped", "unmapped-authority"),
        ("skipped", "original-host"),
    ]
    assert sorted((r.target.origin, r.header("Host"), r.path) for r in seen) == [
        ("http://api-shadow:8082", "api-shadow:8082", "/v1"),
        ("http://shop-shadow:8081", "shop-shadow:8081", "/cart"),
    ]
    by_path = {r["path"]: r for r in collected.results}
    assert by_path["/cart"]["target"] == "http://shop-shadow:8081"
    assert by_path["/x"]["outcome"] == "skipped"
    assert by_path["/x"]["error"] == "unmapped-authority"
    assert by_path["/x"]["target"] == ""
    assert pipeline.stats.skipped == {"unmapped-authority": 1, "original-host": 1}


def test_with_a_target_the_unmapped_authorities_go_there() -> None:
    results, seen, _, _ = replay(MAP, [record(0, authority="other.example.com")])
    assert results[0].kind == "sent"
    assert seen[0].target.origin == "http://default:9000"


RULES = """\
rules:
  - name: auth
    set_header: {name: Authorization, value: "Bearer ${TOKEN}"}
  - name: shadow-only
    apply_to: shadow
    set_header: {name: X-Shadow, value: "1"}
  - name: posts
    when: {method: POST}
    replace_body: {pattern: prod, with: shadow}
"""


def test_rules_apply_to_the_shadow_and_the_baseline_each_with_its_own_target() -> None:
    results, seen, collected, _ = replay(
        RULES,
        [record(0, method="POST", body=b"prod", headers=[("Content-Length", "4")])],
        baseline="http://baseline:7000",
    )
    assert results[0].kind == "sent"
    shadow = next(r for r in seen if r.target.host_port == "default:9000")
    base = next(r for r in seen if r.target.host_port == "baseline:7000")
    assert shadow.header("Authorization") == base.header("Authorization") == "Bearer t0k"
    assert shadow.header("X-Shadow") == "1" and base.header("X-Shadow") is None
    assert shadow.body == base.body == b"shadow"
    assert shadow.header("Content-Length") == "6"
    assert base.header("Host") == "baseline:7000"
    (result,) = collected.results
    assert result["transforms"] == ["auth", "shadow-only", "posts"]
    assert result["baseline"] is not None and result["baseline"]["status"] == 200


def test_a_hook_that_skips_gives_a_skipped_result_with_what_applied_before(
    tmp_path: Any, monkeypatch: Any
) -> None:
    (tmp_path / "skiphook.py").write_text(
        "def f(request):\n    return None if request.path == '/skip' else request\n"
    )
    monkeypatch.chdir(tmp_path)
    results, seen, collected, pipeline = replay(
        RULES + "hook: skiphook:f\n", [record(0, path="/skip"), record(1, path="/ok")]
    )
    assert [(r.kind, r.detail) for r in results] == [("skipped", "transform"), ("sent", None)]
    assert [r.path for r in seen] == ["/ok"]
    skipped = next(r for r in collected.results if r["path"] == "/skip")
    assert skipped["outcome"] == "skipped" and skipped["error"] == "transform"
    assert skipped["transforms"] == ["auth", "shadow-only"]
    assert skipped["target"] == "http://default:9000"
    assert pipeline.stats.line().endswith("skipped-transform 1, undecodable 0")


def test_each_request_is_prepared_after_its_connection_s_previous_answer() -> None:
    """Correlation needs this: the observer learns from request 1 before request 2 is made."""
    log: list[str] = []

    class Step:
        name = "probe"

        async def apply(
            self, request: OutgoingRequest, context: TransformContext
        ) -> OutgoingRequest:
            log.append(f"prepare {request.path}")
            return replace(request, headers=(*request.headers, ("X-Seen", str(len(log)))))

    class Observer:
        def observe(self, context: TransformContext, response: Response | None) -> None:
            log.append(f"answered {context.event['path'].decode()} {response and response.status}")

    async def slow(request: OutgoingRequest) -> Response:
        await asyncio.sleep(0.01)
        return Response(201)

    def customize(transformer: Transformer) -> None:
        transformer.shadow = Chain([entry(Step())], [Observer()])

    records = [record(i, key=b"conn", path=f"/{i}") for i in range(3)]
    results, _, _, _ = replay("", records, handler=slow, customize=customize)
    assert [r.kind for r in results] == ["sent"] * 3
    assert log == [
        "prepare /0",
        "answered /0 201",
        "prepare /1",
        "answered /1 201",
        "prepare /2",
        "answered /2 201",
    ]


def test_a_baseline_skipped_by_its_transforms_is_an_error_on_the_baseline_only() -> None:
    class SkipBaseline:
        name = "skip-baseline"

        async def apply(
            self, request: OutgoingRequest, context: TransformContext
        ) -> OutgoingRequest:
            from replayer.models import Skipped

            raise Skipped("credentials", "no token for the baseline")

    def customize(transformer: Transformer) -> None:
        transformer.baseline = Chain([entry(SkipBaseline())])

    results, seen, collected, _ = replay(
        RULES, [record(0)], baseline="http://baseline:7000", customize=customize
    )
    assert results[0].kind == "sent"
    assert [r.target.host_port for r in seen] == ["default:9000"]
    (result,) = collected.results
    assert result["baseline"] is not None
    assert result["baseline"]["error"] == "not sent: no token for the baseline"
