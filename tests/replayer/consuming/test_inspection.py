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
from tests.terminal import run_in_terminal


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


# -- the table view, and the JSON kept for pipes -------------------------------------

UPLOAD = b"u" * 300_000


def _table_events() -> list[dict[str, Any]]:
    start = 1_767_225_600_000_000  # 2026-01-01 00:00:00 UTC
    return [
        make_event(path="/items/1?q=a", request_start_us=start, response_body=b'{"id": 1}'),
        make_event(
            method="POST",
            path="/upload",
            body=UPLOAD,
            body_length=2_000_000,
            body_truncated=True,
            request_start_us=start + 1_500_000,
        ),
        make_event(path="/down", status=None, error="connection refused", request_start_us=start),
    ]


@pytest.fixture(scope="module")
def table_topic(kafka: Kafka) -> str:
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, _table_events(), raw=[(0, b"junk")])
    return topic


@pytest.mark.e2e
def test_inspect_on_a_terminal_is_a_table_without_bodies(kafka: Kafka, table_topic: str) -> None:
    code, out, err = run_in_terminal(["inspect", "-b", kafka.bootstrap_servers, "-t", table_topic])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "OFFSET", "TIME", "(UTC)", "METHOD", "AUTHORITY", "STATUS", "REQ", "RESP", "ms", "PATH"
    ]  # fmt: skip
    assert lines[1].split() == [
        "0:0", "2026-01-01", "00:00:00.000", "GET", "shop.example.com", "200", "0", "9", "0.6",
        "/items/1?q=a",
    ]  # fmt: skip
    # The upload: 2,000,000 bytes sent, the first 300,000 kept (+ = cut at the cap).
    assert lines[2].split() == [
        "0:1", "2026-01-01", "00:00:01.500", "POST", "shop.example.com", "200", "1953.1K+", "2",
        "0.6", "/upload",
    ]  # fmt: skip
    assert lines[3].split()[4:9] == ["shop.example.com", "ERR", "0", "-", "-"]
    assert lines[4].startswith("0:3") and "error:" in lines[4]
    assert lines[5] == "4 events"
    assert len(out) < 1000  # no body, no base64
    # The bodies when asked for, under their lines.
    code, out, err = run_in_terminal(
        ["inspect", "-b", kafka.bootstrap_servers, "-t", table_topic, "--bodies", "-n", "2"]
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2:4] == ["    response body:", '      {"id": 1}']
    assert lines[5] == "    request body:" and lines[6] == "      " + UPLOAD.decode()
    assert lines[-1] == "2 events"


@pytest.mark.e2e
def test_inspect_in_a_pipe_stays_json_and_can_leave_bodies_out(
    kafka: Kafka, table_topic: str
) -> None:
    code, lines, _ = inspect(kafka, table_topic)  # stdout is a pipe: JSON, as before
    assert code == 0 and len(lines) == 4
    assert lines[1]["request"]["body"] == UPLOAD.decode()
    code, lines, _ = inspect(kafka, table_topic, "--format", "json", "--no-bodies")
    request, message = lines[0]["request"], lines[0]["response"]["message"]
    assert "body" not in request and "body" not in message and "body_base64" not in request
    assert (request["body_length"], message["body_length"]) == (0, 9)
    assert lines[1]["request"]["body_length"] == 2_000_000 and "body" not in lines[1]["request"]
    result = run_cli(
        ["inspect", "-b", kafka.bootstrap_servers, "-t", table_topic, "--format", "table"]
    )
    assert result.stdout.splitlines()[0].startswith("OFFSET") and "uuuu" not in result.stdout
