"""export / import through real processes: recorded traffic to HAR, pcap and .gor, and back.

One recording per module: `trafficmirror record` in front of a real app, a real
client sending GETs with queries, JSON POSTs, binary PUTs, repeated headers
and DELETEs over keep-alive connections. Then, each through the CLI: the pcap
export is read back by Debian's tshark (every request and response with its
headers and body); the HAR export is valid HAR 1.2, imports, replays with
`replay range` to a real HTTP server byte for byte, and exports again the
same; the .gor export imports and exports again byte for byte; a malformed
file writes nothing; import masks secrets unless told not to.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_pipeline import record_traffic
from tests.interchange.test_har import validator
from tests.interchange.tshark import decode, needs_tshark
from tests.recorder.helpers import read_events
from tests.support import Kafka, Procs, run_cli
from trafficmirror.demo.apps import RecordingShadow
from trafficmirror.demo.traffic import SEQ_HEADER, Planned, check_delivery

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def recording(
    kafka: Kafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Planned]]]:
    topic = kafka.new_topic(4, prefix="e2e-io")
    procs = Procs(tmp_path_factory.mktemp("recorder"))
    try:
        traffic = record_traffic(kafka, topic, procs)
    except BaseException:
        print(procs.dump())
        raise
    finally:
        procs.close()
    yield topic, traffic


def cli(*args: str) -> str:
    """Run trafficmirror; it must succeed; its stderr."""
    result = run_cli(list(args))
    assert result.returncode == 0, result.stderr
    return result.stderr


def export(kafka: Kafka, topic: str, path: Path) -> Path:
    stderr = cli("export", "-b", kafka.bootstrap_servers, "-t", topic, "-o", str(path))
    assert f"to {path} as" in stderr
    return path


def imported(kafka: Kafka, path: Path, *extra: str) -> str:
    topic = kafka.new_topic(4, prefix="e2e-import")
    cli("import", str(path), "-b", kafka.bootstrap_servers, "-t", topic, *extra)
    return topic


@needs_tshark
def test_tshark_decodes_every_exported_exchange(
    kafka: Kafka, recording: tuple[str, list[Planned]], tmp_path: Path
) -> None:
    topic, traffic = recording
    decoded = decode(export(kafka, topic, tmp_path / "traffic.pcap"))
    requests = [d for d in decoded if d.method is not None]
    responses = {d.stream: d for d in decoded if d.status is not None}
    assert len(requests) == len(traffic) and len(responses) == len(traffic)
    assert all(d.checksum_ok for d in decoded)
    by_seq = {p.seq: p for p in traffic}
    for request in requests:
        seq_line = next(h for h in request.headers if h.startswith(SEQ_HEADER.encode() + b":"))
        planned = by_seq.pop(int(seq_line.split(b":", 1)[1]))
        assert request.method == planned.method
        assert request.uri == planned.path.encode()
        assert request.headers[: len(planned.headers)] == [
            f"{n}: {v}".encode() for n, v in planned.headers
        ]
        assert request.body == planned.body
        response = responses[request.stream]
        assert response.status == planned.status
        assert json.loads(response.body)["method"] == planned.method  # the app's echo
    assert by_seq == {}


def test_har_exports_valid_imports_replays_and_round_trips(
    kafka: Kafka, recording: tuple[str, list[Planned]], tmp_path: Path
) -> None:
    topic, traffic = recording
    first = export(kafka, topic, tmp_path / "first.har")
    document = json.loads(first.read_text())
    assert not list(validator().iter_errors(document))
    assert len(document["log"]["entries"]) == len(traffic)
    copy = imported(kafka, first)
    with RecordingShadow() as shadow:
        cli(
            "replay",
            "range",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            copy,
            "--start-offset",
            "0",
            "--target",
            shadow.url,
            "--methods",
            "ALL",
        )
        time.sleep(0.3)  # a duplicate would arrive now
        assert check_delivery(traffic, shadow.received) == []
    again = json.loads(export(kafka, copy, tmp_path / "again.har").read_text())
    assert again["log"]["entries"] == document["log"]["entries"]


def test_gor_round_trip_is_byte_for_byte(
    kafka: Kafka, recording: tuple[str, list[Planned]], tmp_path: Path
) -> None:
    topic, traffic = recording
    first = export(kafka, topic, tmp_path / "first.gor")
    copy = imported(kafka, first)
    again = export(kafka, copy, tmp_path / "again.gor")
    assert again.read_bytes() == first.read_bytes()
    events = [event for _, event in read_events(kafka.bootstrap_servers, copy, len(traffic))]
    assert sorted(e["method"] for e in events) == sorted(p.method for p in traffic)
    assert {e["recorder"]["recorder_id"] for e in events} == {"import:gor:first.gor"}


def har_with(entries: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": entries}}
    )


def entry(n: int, **request: Any) -> dict[str, Any]:
    return {
        "startedDateTime": f"2026-12-02T10:00:0{n}.000Z",
        "time": 1,
        "request": {
            "method": "GET",
            "url": f"http://api.test/item/{n}",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [{"name": "Authorization", "value": "Bearer s3cret"}],
            "queryString": [],
            "headersSize": -1,
            "bodySize": 0,
            **request,
        },
        "response": {
            "status": 200,
            "statusText": "OK",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": {"send": 0, "wait": 1, "receive": 0},
    }


def test_malformed_file_fails_in_one_line_and_writes_nothing(kafka: Kafka, tmp_path: Path) -> None:
    path = tmp_path / "broken.har"
    path.write_text(har_with([entry(1), entry(2, url="not a url")]))
    topic = kafka.new_topic(1, prefix="e2e-import")
    result = run_cli(["import", str(path), "-b", kafka.bootstrap_servers, "-t", topic])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "broken.har: entry 1: request.url 'not a url' is not an absolute" in result.stderr
    assert read_events(kafka.bootstrap_servers, topic, 1, timeout=2) == []


def test_import_masks_secrets_unless_told_not_to(kafka: Kafka, tmp_path: Path) -> None:
    path = tmp_path / "secret.har"
    path.write_text(har_with([entry(1)]))
    masked = read_events(kafka.bootstrap_servers, imported(kafka, path), 1)[0][1]
    assert masked["request"]["headers"] == [b"Authorization", b"***"]
    assert masked["recorder"]["redactions"] == ["request.header:authorization=mask"]
    kept = read_events(kafka.bootstrap_servers, imported(kafka, path, "--no-redaction"), 1)[0][1]
    assert kept["request"]["headers"] == [b"Authorization", b"Bearer s3cret"]
    assert kept["recorder"]["redactions"] == []


def test_export_leaves_websocket_messages_out_and_says_so(kafka: Kafka, tmp_path: Path) -> None:
    from tests.replayer.events import make_event, produce_events

    topic = kafka.new_topic(1, prefix="e2e-export-ws")
    upgrade = make_event(path="/chat", status=101, exchange_id="up")
    messages = []
    for n, kind in enumerate(("websocket_message", "websocket_message", "websocket_end")):
        event: dict[str, Any] = {**make_event(path="/chat", exchange_id=f"up/{n}"), "kind": kind}
        event["response"] = None
        event["websocket"] = {
            "upgrade_id": "up", "index": n, "from_client": n == 0, "text": True,
            "payload": b"hi", "payload_truncated": False, "payload_length": 2,
            "close_code": 1000 if kind == "websocket_end" else None, "messages_not_recorded": 0,
        }  # fmt: skip
        messages.append(event)
    produce_events(kafka.bootstrap_servers, topic, [upgrade, *messages, make_event(path="/next")])
    stderr = cli(
        "export", "-b", kafka.bootstrap_servers, "-t", topic, "-o", str(tmp_path / "x.har")
    )
    assert "exported 2 exchanges" in stderr, stderr
    assert "3 WebSocket message and end events left out" in stderr, stderr
    entries = json.loads((tmp_path / "x.har").read_text())["log"]["entries"]
    assert [e["request"]["url"].rsplit("/", 1)[1] for e in entries] == ["chat", "next"]
    assert entries[0]["response"]["status"] == 101
