"""The comparison stage in the pipeline, the results sink, and `--since`/`--until` times."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import pytest

from replayer.comparing.noise import build_rules
from replayer.consuming.timespec import parse_time
from replayer.models import Record, Response, Target
from replayer.pipeline import Pipeline
from replayer.results.build import ResultMessage
from replayer.results.sink import ResultSink
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.results.summary import Stats
from replayer.sending.sender import MockTransport, OutgoingRequest, Sender
from schemas.codec import Codec
from tests.replayer.events import make_event
from tests.support import Kafka
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.kafka import KafkaSettings

CODEC = Codec()
RESULTS = Codec("replay_result")


class Collected:
    """A publisher that keeps the decoded results."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.closed = False

    def send(self, message: ResultMessage) -> bool:
        assert message.topic == "t.results"
        assert message.key == self.decode(message)["id"].encode()
        self.results.append(self.decode(message))
        return True

    @staticmethod
    def decode(message: ResultMessage) -> dict[str, Any]:
        return RESULTS.decode(message.value)

    def close(self, timeout: float = 10.0) -> None:
        self.closed = True


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def answer(doc: bytes) -> Response:
    return Response(200, (("Content-Type", "application/json"), ("Date", "now")), doc)


def replay(
    events: list[dict[str, Any]],
    handler: Any,
    options: ComparisonOptions,
    stats: Stats | None = None,
) -> tuple[list[Any], Collected, Comparison, list[OutgoingRequest]]:
    seen: list[OutgoingRequest] = []

    async def recording(req: OutgoingRequest) -> Response:
        seen.append(req)
        result: Response = await handler(req)
        return result

    async def main() -> list[Any]:
        sender = Sender(MockTransport(recording), concurrency=4)
        pipeline = Pipeline(
            codec=CODEC,
            target=Target.parse("http://shadow:81"),
            sender=sender,
            comparison=cmp,
            stats=stats,
        )
        futures = [
            pipeline.handle(Record("t", 0, n, b"c1", CODEC.encode(e).value))
            for n, e in enumerate(events)
        ]
        done = await asyncio.gather(*futures)
        await sender.aclose()
        return done

    collected = Collected()
    cmp = Comparison(
        options,
        topic="t",
        target=Target.parse("http://shadow:81"),
        publisher=collected,
        replayer_id="r1",
    )
    done = asyncio.run(main())
    cmp.close()
    assert collected.closed
    return done, collected, cmp, seen


def test_results_for_match_mismatch_error_and_skipped() -> None:
    events = [
        make_event(path="/users/1", response_body=body(id=1, name="ann")),
        make_event(path="/users/2", response_body=body(id=2, name="bob", ts=1)),
        make_event(path="/down"),
        make_event(method="POST", body=b"x", body_truncated=True, body_length=9),
    ]

    async def shadow(req: OutgoingRequest) -> Response:
        if req.path == "/down":
            raise ConnectionRefusedError("refused")
        if req.path == "/users/1":
            return answer(body(id=1, name="ANN"))
        return answer(body(id=2, name="bob", ts=2))

    options = ComparisonOptions(rules=build_rules(ignore_paths=["$.ts"]), run_id="run-7")
    done, collected, cmp, _ = replay(events, shadow, options)
    assert [r.kind for r in done] == ["sent", "sent", "error", "skipped"]
    by_path = {r["path"]: r for r in collected.results}
    users1 = by_path["/users/1"]
    assert users1["outcome"] == "mismatch"
    assert users1["endpoint"] == "GET /users/{id}"
    assert users1["differences"][0] == {
        "kind": "body_json",
        "path": "$.name",
        "production": '"ann"',
        "shadow": '"ANN"',
        "noise": False,
    }
    assert (users1["run_id"], users1["replayer_id"], users1["target"]) == (
        "run-7",
        "r1",
        "http://shadow:81",
    )
    assert users1["source"] == {"topic": "t", "partition": 0, "offset": 0}
    assert users1["shadow_latency_us"] is not None and users1["sent_us"] > 0
    assert (by_path["/users/2"]["outcome"], by_path["/users/2"]["noise_count"]) == ("match", 1)
    assert by_path["/down"]["outcome"] == "error" and "refused" in by_path["/down"]["error"]
    assert by_path["/"]["outcome"] == "skipped" and by_path["/"]["error"] == "truncated"
    assert cmp.line().startswith(
        "comparison: match 1 (noise only 1), mismatch 1, errors 1, skipped 1"
    )


def test_baseline_gets_the_same_requests_and_turns_shared_differences_into_noise() -> None:
    events = [
        make_event(path=f"/clock/{n}", response_body=body(n=n, now="t0"), client=("10.0.0.1", n))
        for n in range(3)
    ]
    in_flight = {"shadow": 0, "baseline": 0, "both": False}

    async def servers(req: OutgoingRequest) -> Response:
        side = "baseline" if req.target.host_port == "base:82" else "shadow"
        in_flight[side] += 1
        await asyncio.sleep(0.02)
        in_flight["both"] = in_flight["both"] or (in_flight["shadow"] and in_flight["baseline"])
        in_flight[side] -= 1
        n = int(req.path.rsplit("/", 1)[1])
        return answer(body(n=n, now=f"t-{side}"))

    options = ComparisonOptions(baseline="http://base:82")
    done, collected, _, seen = replay(events, servers, options)
    assert [r.kind for r in done] == ["sent"] * 3
    assert sorted(r.target.host_port for r in seen) == ["base:82"] * 3 + ["shadow:81"] * 3
    assert in_flight["both"], "the baseline request should run alongside the shadow's"
    for result in collected.results:
        assert result["outcome"] == "match"
        assert result["differences"][0]["path"] == "$.now" and result["differences"][0]["noise"]
        assert result["baseline"]["target"] == "http://base:82"
        assert result["baseline"]["status"] == 200


def test_a_failing_baseline_leaves_differences_unclassified() -> None:
    async def servers(req: OutgoingRequest) -> Response:
        if req.target.host_port == "base:82":
            raise ConnectionRefusedError("baseline down")
        return answer(body(now="t-shadow"))

    events = [make_event(path="/clock", response_body=body(now="t0"))]
    _, collected, _, _ = replay(events, servers, ComparisonOptions(baseline="http://base:82"))
    (result,) = collected.results
    assert result["outcome"] == "mismatch"
    assert "baseline down" in result["baseline"]["error"]


def test_mirror_captures_without_baseline_are_sent_and_unverified() -> None:
    events = [
        make_event(path="/items/1", capture="mirror"),
        make_event(method="POST", path="/orders", body=b"{}", capture="mirror"),
        # A proxy event whose upstream failed: skipped, as before.
        make_event(path="/failed", status=None, error="upstream reset"),
    ]

    async def shadow(req: OutgoingRequest) -> Response:
        return Response(201 if req.method == "POST" else 200, (), b"{}")

    stats = Stats()
    done, collected, cmp, seen = replay(events, shadow, ComparisonOptions(), stats)
    assert [r.kind for r in done] == ["sent"] * 3 and len(seen) == 3
    by_path = {r["path"]: r for r in collected.results}
    for path, status in (("/items/1", 200), ("/orders", 201)):
        result = by_path[path]
        assert (result["outcome"], result["error"], result["capture"]) == (
            "unverified",
            "no production response",
            "mirror",
        )
        assert result["shadow_status"] == status and result["shadow_latency_us"] is not None
        assert result["production_status"] is None and result["differences"] == []
    assert by_path["/failed"]["outcome"] == "skipped"
    assert by_path["/failed"]["capture"] == "proxy"
    assert cmp.line() == (
        "comparison: match 0 (noise only 0), mismatch 0, errors 0, skipped 1, "
        "no production response 2"
    )
    assert "sent 3 (no production response 2)" in stats.line()


def test_mirror_captures_with_baseline_are_compared_with_the_baseline() -> None:
    events = [
        make_event(path=f"/prices/{n}", capture="mirror", client=("10.0.0.1", n)) for n in range(3)
    ]

    async def servers(req: OutgoingRequest) -> Response:
        n = int(req.path.rsplit("/", 1)[1])
        side = "baseline" if req.target.host_port == "base:82" else "shadow"
        price = n + 1 if side == "shadow" and n == 2 else n
        # Date differs on every answer: the default rules never compare it.
        return Response(
            200,
            (("Content-Type", "application/json"), ("Date", side)),
            body(n=n, price=price),
        )

    stats = Stats()
    options = ComparisonOptions(baseline="http://base:82", rules=build_rules())
    done, collected, cmp, seen = replay(events, servers, options, stats)
    assert [r.kind for r in done] == ["sent"] * 3
    assert sorted(r.target.host_port for r in seen) == ["base:82"] * 3 + ["shadow:81"] * 3
    by_path = {r["path"]: r for r in collected.results}
    assert [by_path[f"/prices/{n}"]["outcome"] for n in range(3)] == ["match", "match", "mismatch"]
    differs = by_path["/prices/2"]
    # The baseline's value stands where production's would.
    assert differs["differences"] == [
        {"kind": "body_json", "path": "$.price", "production": "2", "shadow": "3", "noise": False}
    ]
    assert differs["baseline"]["status"] == 200 and differs["capture"] == "mirror"
    assert differs["production_status"] is None
    assert cmp.line().startswith(
        "comparison: match 2 (noise only 0), mismatch 1, errors 0, skipped 0; "
        "vs baseline 3 (mirror captures, in match and mismatch)"
    )
    assert "sent 3 (no production response 3)" in stats.line()


def test_a_mirror_capture_whose_baseline_fails_is_unverified() -> None:
    async def servers(req: OutgoingRequest) -> Response:
        if req.target.host_port == "base:82":
            raise ConnectionRefusedError("baseline down")
        return answer(body(now="t-shadow"))

    events = [make_event(path="/clock", capture="mirror")]
    _, collected, _, _ = replay(events, servers, ComparisonOptions(baseline="http://base:82"))
    (result,) = collected.results
    assert result["outcome"] == "unverified"
    assert result["error"].startswith("no production response; the baseline failed: ")
    assert "baseline down" in result["baseline"]["error"]


def test_result_sink_writes_to_kafka_and_counts(kafka: Kafka) -> None:
    topic = kafka.new_topic(1, prefix="sink")
    sink = ResultSink(KafkaSettings(kafka.bootstrap_servers))
    assert sink.send(ResultMessage(topic, b"k", b"v", [("h", b"1")]))
    sink.close(10)
    assert sink.counts.line() == "written 1, lost 0"
    assert not sink.send(ResultMessage(topic, b"k", b"v", []))  # closed: counted, not raised
    assert sink.counts.lost == 1


def test_result_sink_counts_acknowledgements_while_running(kafka: Kafka) -> None:
    # Acknowledgements arrive as batched counts after polls, not one callback each.
    topic = kafka.new_topic(2, prefix="sink")
    sink = ResultSink(KafkaSettings(kafka.bootstrap_servers))
    for i in range(150):
        assert sink.send(ResultMessage(topic, f"k{i}".encode(), b"v", []))
    deadline = time.monotonic() + 10
    while sink.counts.delivered < 150 and time.monotonic() < deadline:
        assert sink.counts.delivered <= sink.counts.enqueued
        time.sleep(0.01)
    assert sink.counts.delivered == 150  # before close
    sink.close(10)
    assert sink.counts.line() == "written 150, lost 0"


def test_parse_time() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_time("-15m", now) == now - dt.timedelta(minutes=15)
    assert parse_time("-1h30m", now) == now - dt.timedelta(minutes=90)
    assert parse_time("-1.5d", now) == now - dt.timedelta(hours=36)
    assert parse_time("now", now) == now
    assert parse_time("2024-05-01T10:00:00Z") == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    local = parse_time("2024-05-01T10:00")
    assert local.tzinfo is not None and local.replace(tzinfo=None) == dt.datetime(2024, 5, 1, 10)
    assert parse_time("2024-05-01") < parse_time("2024-05-02")
    for bad in ("yesterday", "15m", "-15x", ""):
        with pytest.raises(ConfigError, match="is not a time"):
            parse_time(bad, now)
