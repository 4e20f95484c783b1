"""ReplayResult records and the replay_result schema."""

from __future__ import annotations

from typing import Any

from replayer.comparing.endpoints import Router
from replayer.comparing.responses import Difference, ResponseView
from replayer.results.build import (
    build_result,
    differences_of,
    production_latency_us,
    record_metrics,
    result_key,
    result_message,
)
from schemas.codec import Codec, available_versions


def event(
    exchange_id: str = "ex-1",
    path: bytes = b"/users/17?x=1",
    status: int | None = 200,
    start: int = 1_700_000_000_000_000,
    capture: str = "proxy",
) -> dict[str, Any]:
    response = None
    if status is not None:
        response = {
            "status": status,
            "reason": b"OK",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": [b"content-type", b"application/json"],
                "body": b'{"a": 1}',
                "body_truncated": False,
                "body_length": 8,
                "trailers": None,
            },
        }
    return {
        "id": exchange_id,
        "request_start_us": start,
        "request_end_us": start + 1_000,
        "response_start_us": start + 20_000 if response else None,
        "response_end_us": start + 26_000 if response else None,
        "method": "GET",
        "path": path,
        "response": response,
        "error": None if response or capture == "mirror" else "upstream connect error",
        "recorder": {"capture": capture},
    }


def result(
    exchange_id: str = "ex-1",
    differences: tuple[Difference, ...] = (),
    shadow_status: int | None = 200,
    path: bytes = b"/users/17",
    latency: float = 0.010,
    **kw: Any,
) -> dict[str, Any]:
    shadow = ResponseView(shadow_status) if shadow_status is not None else None
    return build_result(
        event(exchange_id, path),
        topic="t",
        partition=1,
        offset=42,
        target="http://shadow:8080",
        sent_us=1_700_000_100_000_000,
        lateness_us=250,
        shadow=shadow,
        shadow_latency_s=latency,
        error=None if shadow else "connection refused",
        differences=differences,
        **kw,
    )


NAME = Difference("body_json", "$.user.name", '"a"', '"b"')
TS = Difference("body_json", "$.ts", "1", "2", noise=True)
DATE = Difference("header", "x-date", "a", "b", noise=True)


def test_schema_is_shipped_and_round_trips_through_the_codec() -> None:
    assert available_versions("replay_result") == (1, 2, 3, 4)
    codec = Codec("replay_result")
    assert codec.write_schema["name"] == "io.trafficmirror.ReplayResult"
    record = result(
        differences=(NAME, TS),
        run_id="run-7",
        replayer_id="pod-1",
        baseline_target="http://baseline",
        baseline=ResponseView(200),
        baseline_latency_s=0.002,
    )
    encoded = codec.encode(record)
    assert encoded.value[:2] == b"\xc3\x01"
    assert codec.decode(encoded.value) == record


def test_build_result_fields() -> None:
    r = result(differences=(TS, NAME))
    assert r["id"] == "ex-1" and result_key(r) == b"ex-1"
    assert r["source"] == {"topic": "t", "partition": 1, "offset": 42}
    assert r["endpoint"] == "GET /users/{id}"
    assert r["path"] == "/users/17"
    assert r["recorded_us"] == 1_700_000_000_000_000
    assert r["lateness_us"] == 250
    assert r["production_status"] == 200 and r["shadow_status"] == 200
    assert r["production_latency_us"] == 25_000  # request end to response end
    assert r["shadow_latency_us"] == 10_000
    assert r["outcome"] == "mismatch" and r["error"] is None
    assert r["mismatch_kinds"] == ["body_json"]
    assert (r["difference_count"], r["noise_count"]) == (2, 1)
    # Non-noise first, each group in its original order.
    assert differences_of(r) == [NAME, TS]
    assert r["baseline"] is None


def test_outcomes() -> None:
    assert result()["outcome"] == "match"
    assert result(differences=(TS, DATE))["outcome"] == "match"
    err = result(shadow_status=None)
    assert (err["outcome"], err["error"], err["shadow_latency_us"]) == (
        "error",
        "connection refused",
        None,
    )
    skipped = result(skipped="request body truncated")
    assert (skipped["outcome"], skipped["error"]) == ("skipped", "request body truncated")
    no_prod = build_result(
        event(status=None),
        topic="t",
        partition=0,
        offset=0,
        target="x",
        sent_us=0,
        shadow=ResponseView(200),
        shadow_latency_s=0.1,
    )
    assert no_prod["outcome"] == "skipped"
    assert no_prod["production_status"] is None
    assert "upstream connect error" in no_prod["error"]
    assert no_prod["capture"] == "proxy"


SHADOW_201 = ResponseView(201)


def mirror_result(
    exchange_id: str = "m-1", shadow: ResponseView | None = SHADOW_201, **kw: Any
) -> dict[str, Any]:
    """The result of replaying a mirror capture (no production response, no error)."""
    return build_result(
        event(exchange_id, status=None, capture="mirror"),
        topic="t",
        partition=0,
        offset=7,
        target="http://shadow",
        sent_us=0,
        shadow=shadow,
        shadow_latency_s=0.004,
        **kw,
    )


def test_a_mirror_capture_without_baseline_is_unverified_not_skipped() -> None:
    r = mirror_result()
    assert (r["outcome"], r["error"], r["capture"]) == (
        "unverified",
        "no production response",
        "mirror",
    )
    # It was sent: the shadow's answer is kept, production's columns stay empty.
    assert (r["shadow_status"], r["shadow_latency_us"]) == (201, 4_000)
    assert (r["production_status"], r["production_latency_us"], r["production_error"]) == (
        None,
        None,
        None,
    )
    assert r["mismatch_kinds"] == [] and r["differences"] == []
    failed = mirror_result(baseline_target="http://base", baseline_error="connection refused")
    assert failed["outcome"] == "unverified"
    assert failed["error"] == "no production response; the baseline failed: connection refused"
    assert failed["baseline"] == {
        "target": "http://base",
        "status": None,
        "latency_us": None,
        "error": "connection refused",
    }


def test_a_mirror_capture_with_baseline_is_compared_with_it() -> None:
    same = mirror_result(baseline_target="http://base", baseline=ResponseView(201))
    assert (same["outcome"], same["error"], same["capture"]) == ("match", None, "mirror")
    differs = mirror_result(
        baseline_target="http://base",
        baseline=ResponseView(200),
        differences=(Difference("status", "status", "200", "201"),),
    )
    assert differs["outcome"] == "mismatch" and differs["mismatch_kinds"] == ["status"]
    assert differs["baseline"] is not None and differs["baseline"]["status"] == 200
    # The shadow failing is an error, as for any event.
    assert mirror_result(shadow=None, error="timeout")["outcome"] == "error"


def test_results_written_by_v1_decode_as_proxy_captures() -> None:
    record = result(differences=(NAME,))
    del record["capture"]
    old = Codec("replay_result", write_version=1).encode(record)
    decoded = Codec("replay_result").decode(old.value)
    assert decoded["capture"] == "proxy"
    # v4's shadow body fields have their defaults: unknown length, not truncated.
    assert decoded == {**record, "capture": "proxy", "shadow_body_length": None}


def test_stored_differences_are_capped_but_counted() -> None:
    many = tuple(Difference("body_json", f"$.a[{i}]", "1", "2", noise=True) for i in range(80))
    r = result(differences=(*many, Difference("status", "status", "200", "500")))
    assert len(r["differences"]) == 50
    assert r["differences"][0]["kind"] == "status"
    assert r["difference_count"] == 81 and r["noise_count"] == 80
    assert r["mismatch_kinds"] == ["status"]


def test_custom_router() -> None:
    r = result(path=b"/articles/hello", router=Router(["/articles/{slug}"]))
    assert r["endpoint"] == "GET /articles/{slug}"


def test_production_latency_fallbacks() -> None:
    # No request end recorded (null): measured from the request's start.
    no_end = event(start=10)
    no_end["request_end_us"] = None
    no_end["response_end_us"] = 30
    assert production_latency_us(no_end) == 20
    no_end["response_end_us"] = None
    assert production_latency_us(no_end) is None


def test_result_message_and_metrics() -> None:
    from prometheus_client import REGISTRY

    codec = Codec("replay_result")
    r = result("m-1", (NAME, DATE))
    message = result_message("traffic", r, codec)
    assert (message.topic, message.key) == ("traffic.results", b"m-1")
    assert codec.decode(message.value) == r
    assert dict(message.headers)["content-type"].startswith(b"application/avro")

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        value("trafficmirror_replayer_results_total", outcome="mismatch"),
        value("trafficmirror_replayer_mismatches_total", kind="body_json"),
        value("trafficmirror_replayer_noise_only_total"),
    )
    record_metrics(r)
    record_metrics(result("m-2", (TS,)))
    after = (
        value("trafficmirror_replayer_results_total", outcome="mismatch"),
        value("trafficmirror_replayer_mismatches_total", kind="body_json"),
        value("trafficmirror_replayer_noise_only_total"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
