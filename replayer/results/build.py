"""ReplayResult records: one replay's outcome, ready for `<topic>.results`.

`build_result()` turns one replay (the recorded event, where it came from, the
shadow's response or error, the differences) into a `ReplayResult` record,
ready for `Codec("replay_result").encode` and `<topic>.results` with
`result_key()` as the message key. A mirror capture (`record --mirror`: no
production response) is compared with the baseline's response, or, without
one, gets the outcome `unverified` ("no production response"), never a mismatch.
`record_metrics()` counts each replay in Prometheus; the report counts each
exchange once (`replayer.results.aggregate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from prometheus_client import Counter as Metric

from replayer.comparing.endpoints import Router, printable, route
from replayer.comparing.grpc import GrpcCall
from replayer.comparing.responses import (
    KINDS,
    Difference,
    Kind,
    ResponseView,
    is_mirror_capture,
)
from schemas.codec import Codec
from schemas.records import BaselineReplay, HttpExchange, ReplayResult
from trafficmirror.plumbing.kafka import results_topic

OUTCOMES = ("match", "mismatch", "error", "skipped", "unverified")
#: The detail of a result with nothing to compare with: a mirror capture without a baseline.
NO_PRODUCTION_RESPONSE = "no production response"
#: At most this many differences are stored in one result (the rest are counted).
MAX_STORED_DIFFERENCES = 50

# Module-level, like the pipeline's: a metric is registered once per process.
# They count replays, so a redelivered exchange counts again; the report counts
# exchanges (see `replayer.results.aggregate`).
RESULTS = Metric(
    "trafficmirror_replayer_results",
    "Compared replays by outcome: match (no difference but noise), mismatch, error, skipped, "
    "unverified (a mirror capture: no production response, and no baseline to compare with).",
    ["outcome"],
)
MISMATCHES = Metric(
    "trafficmirror_replayer_mismatches",
    "Replays with a difference that is not noise, by kind "
    "(status, header, body_json, body_text, body_binary); one replay can count in several.",
    ["kind"],
)
NOISE_ONLY = Metric(
    "trafficmirror_replayer_noise_only",
    "Replays that match but differ in noise (ignored paths or headers, or like the baseline).",
)


def production_latency_us(event: HttpExchange) -> int | None:
    """Production's latency from the recorded timestamps, in microseconds.

    Measured from the end of the request (the recorder forwards a request once
    it has all of it) to the end of the response, which is what the replayer
    measures for the shadow; the client's upload time is not the app's latency.
    """
    end = event["response_end_us"]
    start = event["request_end_us"] or event["request_start_us"]
    if end is None:
        return None
    return max(0, end - start)


def _micros(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1_000_000)


def build_result(
    event: HttpExchange,
    *,
    topic: str,
    partition: int,
    offset: int,
    target: str,
    sent_us: int,
    lateness_us: int = 0,
    shadow: ResponseView | None = None,
    shadow_latency_s: float | None = None,
    error: str | None = None,
    differences: Sequence[Difference] = (),
    skipped: str | None = None,
    baseline_target: str | None = None,
    baseline: ResponseView | None = None,
    baseline_latency_s: float | None = None,
    baseline_error: str | None = None,
    run_id: str = "",
    replayer_id: str = "",
    router: Router | None = None,
    max_differences: int = MAX_STORED_DIFFERENCES,
    transforms: Sequence[str] = (),
) -> ReplayResult:
    """The `ReplayResult` record of one replay.

    Outcome: `skipped` if `skipped` gives a reason (the request was not sent) or
    production failed, so there is nothing to compare with; `error` if the shadow
    gave no response (`error` says why); `unverified` for a mirror capture (no
    production response) with no `baseline` response to compare with; else
    `mismatch` if any difference is not noise, `match` otherwise (for a mirror
    capture, `differences` are the shadow's with the baseline). `differences`
    are stored non-noise first, at most `max_differences`; the counts and
    `mismatch_kinds` cover all of them.
    `transforms`: the names of the transforms applied to the request (never values).
    A `shadow` body the replayer kept only part of (`body_truncated`) is
    compared on that part and its whole length, and the result says so.
    """
    method = event["method"]
    path = event["path"].decode("utf-8", "backslashreplace")
    response = event["response"]
    production_error = event["error"]
    mirror = response is None and is_mirror_capture(event)
    detail = error
    if skipped is not None:
        outcome, detail = "skipped", skipped
    elif shadow is None:
        outcome, detail = "error", error or "no response from the shadow"
    elif mirror and baseline is None:  # with a baseline, its response is the reference
        outcome, detail = "unverified", NO_PRODUCTION_RESPONSE
        if baseline_error is not None:
            detail += f"; the baseline failed: {baseline_error}"
    elif response is None and not mirror:
        outcome = "skipped"
        detail = f"production has no response to compare with: {production_error or 'unknown'}"
    elif any(not d.noise for d in differences):
        outcome = "mismatch"
    else:
        outcome = "match"
    kinds = {d.kind for d in differences if not d.noise}
    ordered = sorted(differences, key=lambda d: d.noise)  # stable: keeps each group's order
    baseline_record: BaselineReplay | None = None
    if baseline_target is not None:
        baseline_record = {
            "target": baseline_target,
            "status": baseline.status if baseline is not None else None,
            "latency_us": _micros(baseline_latency_s),
            "error": baseline_error,
        }
    return {
        "id": event["id"],
        "run_id": run_id,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "target": target,
        "replayer_id": replayer_id,
        "method": method,
        "path": path,
        "endpoint": _endpoint(event, method, path, router),
        "recorded_us": event["request_start_us"],
        "sent_us": sent_us,
        "lateness_us": lateness_us,
        "production_status": response["status"] if response is not None else None,
        "production_latency_us": production_latency_us(event),
        "production_error": production_error,
        "shadow_status": shadow.status if shadow is not None else None,
        "shadow_latency_us": _micros(shadow_latency_s) if shadow is not None else None,
        "error": detail,
        "outcome": outcome,
        "mismatch_kinds": [str(k) for k in KINDS if k in kinds] + sorted(kinds.difference(KINDS)),
        "difference_count": len(differences),
        "noise_count": sum(1 for d in differences if d.noise),
        "differences": [d.to_record() for d in ordered[:max_differences]],
        "baseline": baseline_record,
        "capture": event["recorder"]["capture"],
        "transforms": list(transforms),
        "shadow_body_length": _body_length(shadow),
        "shadow_body_truncated": shadow is not None and shadow.body_truncated,
        "shadow_body_sha256": shadow.body_sha256 if shadow is not None else None,
    }


def _body_length(response: ResponseView | None) -> int | None:
    """The whole body's length: the kept bytes, or the length counted past the cap."""
    if response is None:
        return None
    if response.body_truncated and response.body_length is not None:
        return response.body_length
    return len(response.body)


def result_key(result: ReplayResult) -> bytes:
    """The Kafka message key of a result: the exchange id."""
    return result["id"].encode()


# The labelled children, looked up once: `labels()` costs more than `inc()` itself.
_RESULT_CHILDREN = {outcome: RESULTS.labels(outcome) for outcome in OUTCOMES}
_MISMATCH_CHILDREN: dict[str, Metric] = {kind: MISMATCHES.labels(kind) for kind in KINDS}


def record_metrics(result: ReplayResult) -> None:
    """Count one result in the Prometheus metrics (outcome, mismatch kinds, noise only)."""
    outcome = result["outcome"]
    child = _RESULT_CHILDREN.get(outcome)
    (child or RESULTS.labels(outcome)).inc()
    for kind in result["mismatch_kinds"]:
        (_MISMATCH_CHILDREN.get(kind) or MISMATCHES.labels(kind)).inc()
    if result["outcome"] == "match" and result["noise_count"]:
        NOISE_ONLY.inc()


# Not frozen: built for every replayed record, where a frozen dataclass's slower
# construction shows (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class ResultMessage:
    """A result ready for `Producer.produce(topic, value, key=key, headers=headers)`."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def result_message(traffic_topic: str, result: ReplayResult, codec: Codec) -> ResultMessage:
    """The Kafka message of `result` for `<traffic_topic>.results`, keyed by exchange id.

    `codec` is a `Codec("replay_result")`, built once per process.
    """
    encoded = codec.encode(result)
    return ResultMessage(
        results_topic(traffic_topic), result_key(result), encoded.value, encoded.headers
    )


def differences_of(result: ReplayResult) -> list[Difference]:
    """The stored differences of a result as `Difference` objects."""
    # The schema's kind is a string (a newer writer may add kinds): kept as it is.
    return [
        Difference(cast(Kind, d["kind"]), d["path"], d["production"], d["shadow"], d["noise"])
        for d in result["differences"]
    ]


def _endpoint(event: HttpExchange, method: str, path: str, router: Router | None) -> str:
    """`GET /users/{id}`; a gRPC call is its method's path, `/package.Service/Method`."""
    request = event.get("request")  # absent only in hand-made partial events
    grpc = request is not None and method == "POST"  # every gRPC call is a POST
    call = GrpcCall.of_request(event["path"], request["headers"]) if grpc else None
    if call is not None:
        return printable(call.path)
    return (router or route)(method, path)
