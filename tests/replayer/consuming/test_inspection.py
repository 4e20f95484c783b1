"""`trafficmirror inspect`: JSON lines with text-or-base64 fields, fixed ranges, limits."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from replayer.consuming.inspection import record_json, to_jsonable
from replayer.models import Record
from schemas.codec import Codec
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, run_cli


def test_bytes_become_text_or_base64_and_the_key_says_which() -> None:
    event = make_event(
        method="POST",
        path=b"/caf\xc3\xa9?x=1",
        headers=[("Host", "h"), ("X-Tag", "a"), ("x-tag", "b")],
        body=b"\xff\x00binary",
    )
    out = to_jsonable(event)
    assert out["path"] == "/caf\u00e9?x=1"
    assert out["request"]["headers"] == [["Host", "h"], ["X-Tag", "a"], ["x-tag", "b"]]
    assert "body" not in out["request"]
    assert base64.b64decode(out["request"]["body_base64"]) == b"\xff\x00binary"
    assert out["request"]["trailers"] is None
    assert out["response"]["reason"] == "OK"
    assert out["response"]["message"]["body"] == "{}"
    assert out["recorder"]["redactions"] == []
    json.dumps(out)  # everything is JSON-serializable


def test_a_header_list_with_non_utf8_bytes_is_all_base64() -> None:
    event = make_event(path=b"/\xff", headers=[("Host", "h"), (b"X-Raw", b"caf\xe9")])
    out = to_jsonable(event)
    assert "headers" not in out["request"]
    pairs = out["request"]["headers_base64"]
    assert [[base64.b64decode(n), base64.b64decode(v)] for n, v in pairs] == [
        [b"Host", b"h"],
        [b"X-Raw", b"caf\xe9"],
    ]
    assert base64.b64decode(out["path_base64"]) == b"/\xff"


def test_record_line_has_kafka_coordinates_first_and_errors_inline() -> None:
    record = Record("t", 2, 41, b"10.0.0.1:5", b"...", 1_700_000_000_000)
    line = json.loads(record_json(record, make_event(exchange_id="abc"), None))
    assert list(line)[:2] == ["kafka", "id"]
    assert line["kafka"] == {
        "topic": "t",
        "partition": 2,
        "offset": 41,
        "timestamp_ms": 1_700_000_000_000,
        "key": "10.0.0.1:5",
    }
    assert line["id"] == "abc"
    bad = json.loads(record_json(Record("t", 0, 1, b"\xff", b"x"), None, "not an event"))
    assert bad == {
        "kafka": {
            "topic": "t",
            "partition": 0,
            "offset": 1,
            "timestamp_ms": None,
            "key_base64": "/w==",
        },
        "error": "not an event",
    }


def inspect(kafka: Kafka, topic: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = run_cli(["inspect", "-b", kafka.bootstrap_servers, "-t", topic, *args], timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, lines, result.stderr


@pytest.mark.e2e
def test_inspect_prints_every_event_and_stops_at_the_end(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    first = [make_event(path=f"/a/{n}", body=b"caf\xc3\xa9" if n == 1 else b"") for n in range(5)]
    second = [make_event(path=f"/b/{n}") for n in range(3)]
    produce_events(
        kafka.bootstrap_servers, topic, first, partition=0, raw=[(0, b"\xc3\x01garbage")]
    )
    produce_events(kafka.bootstrap_servers, topic, second, partition=1)

    code, lines, stderr = inspect(kafka, topic)
    assert code == 0, stderr
    assert len(lines) == 9
    by_partition = {0: [], 1: []}  # type: dict[int, list[dict[str, Any]]]
    for line in lines:
        by_partition[line["kafka"]["partition"]].append(line)
    assert [x["kafka"]["offset"] for x in by_partition[0]] == [0, 1, 2, 3, 4, 5]
    assert [x.get("path") for x in by_partition[0][:5]] == [f"/a/{n}" for n in range(5)]
    assert by_partition[0][1]["request"]["body"] == "caf\u00e9"
    assert by_partition[0][1]["id"] == first[1]["id"]
    assert by_partition[0][1]["kafka"]["key"] == "127.0.0.1:50000"
    assert by_partition[0][5]["error"].startswith("truncated single-object header")
    assert [x["path"] for x in by_partition[1]] == ["/b/0", "/b/1", "/b/2"]

    code, lines, _ = inspect(kafka, topic, "-p", "0", "--start-offset", "1", "--end-offset", "3")
    assert code == 0
    assert [x["path"] for x in lines] == ["/a/1", "/a/2", "/a/3"]

    code, lines, _ = inspect(kafka, topic, "-p", "1", "--limit", "2")
    assert [x["path"] for x in lines] == ["/b/0", "/b/1"]


@pytest.mark.e2e
def test_inspect_of_an_empty_topic_prints_nothing_and_bad_offsets_exit_2(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    code, lines, stderr = inspect(kafka, topic)
    assert (code, lines) == (0, [])
    assert "is empty" in stderr
    produce_events(kafka.bootstrap_servers, topic, [make_event()])
    result = run_cli(["inspect", "-b", kafka.bootstrap_servers, "-t", topic, "--start-offset", "3"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"trafficmirror: error: start offset 3 is outside: partition 0 of topic '{topic}' "
        "holds offsets 0..0 (low watermark 0, high 1)"
    ]


def test_codec_round_trip_of_the_factory_event() -> None:
    """make_event() must stay valid for the schema the tests encode it with."""
    event = make_event(trailers=[("X-Checksum", "1")], error=None)
    assert Codec().decode(Codec().encode(event).value)["request"]["trailers"] == [
        b"X-Checksum",
        b"1",
    ]
