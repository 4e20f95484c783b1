"""Every replay_result version decodes into the newest; what a version added gets its default."""

from __future__ import annotations

from typing import Any

from schemas import Codec, available_versions
from schemas.records import ReplayResult


def newest_result(**overrides: Any) -> ReplayResult:
    result: dict[str, Any] = {
        "id": "ex-1",
        "run_id": "run",
        "source": {"topic": "t", "partition": 0, "offset": 7},
        "target": "http://shadow:8080",
        "replayer_id": "host/1",
        "method": "GET",
        "path": "/orders/17",
        "endpoint": "GET /orders/{id}",
        "recorded_us": 1,
        "sent_us": 2,
        "lateness_us": 0,
        "production_status": 200,
        "production_latency_us": 10,
        "production_error": None,
        "shadow_status": 200,
        "shadow_latency_us": 11,
        "error": None,
        "outcome": "match",
        "mismatch_kinds": [],
        "difference_count": 0,
        "noise_count": 0,
        "differences": [],
        "baseline": None,
        "capture": "proxy",
        "transforms": ["auth", "order-id"],
    }
    result.update(overrides)
    return result  # type: ignore[return-value]


def test_every_version_decodes_into_the_newest() -> None:
    reader = Codec("replay_result")
    for version in available_versions("replay_result"):
        writer = Codec("replay_result", write_version=version)
        decoded = reader.decode_result(writer.encode(newest_result()).value)
        assert decoded["id"] == "ex-1" and decoded["path"] == "/orders/17"


def test_a_result_written_before_transforms_lists_none() -> None:
    # v3 added `transforms`; v1 and v2 results decode with none.
    for version in (1, 2):
        old = Codec("replay_result", write_version=version)
        decoded = Codec("replay_result").decode_result(old.encode(newest_result()).value)
        assert decoded["transforms"] == []
    new = Codec("replay_result").decode_result(Codec("replay_result").encode(newest_result()).value)
    assert new["transforms"] == ["auth", "order-id"]
