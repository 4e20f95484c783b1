"""The WebSocket recorder on its own: a fake sink, mitmproxy's test flows, the real codec."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketData, WebSocketMessage
from wsproto.frame_protocol import Opcode

from recorder.accounting import Counts
from recorder.event import recorder_info
from recorder.redact import Redactor
from recorder.sink import SinkStats
from recorder.websocket import WebSocketRecorder
from schemas.codec import Codec
from schemas.records import KIND_HTTP, KIND_WEBSOCKET_END, KIND_WEBSOCKET_MESSAGE, RecorderInfo
from tests.recorder.helpers import read_events
from tests.recorder.test_addon import configured, in_loop
from tests.support import Kafka


@dataclass
class Sent:
    key: bytes | None
    value: bytes
    timestamp_ms: int


@dataclass
class FakeSink:
    """Keeps what was sent; `full` makes it refuse like a full producer queue."""

    full: bool = False
    sent: list[Sent] = field(default_factory=list)

    def send(
        self,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 0,
    ) -> bool:
        if self.full:
            return False
        self.sent.append(Sent(key, value, timestamp_ms))
        return True


@dataclass
class FakeHost:
    """The recorder's side: its sink, codec, cap, redactor and which upgrades it kept."""

    sink: Any = field(default_factory=FakeSink)
    codec: Codec | None = field(default_factory=Codec)
    max_body_bytes: int = 16
    redactor: Redactor = field(default_factory=Redactor)
    kept_ids: set[str] = field(default_factory=set)

    def kept(self, flow: http.HTTPFlow) -> bool:
        return flow.id in self.kept_ids

    def info_for(self, flow: http.HTTPFlow) -> RecorderInfo:
        return recorder_info("ws-unit")


def upgrade(host: FakeHost, kept: bool = True) -> http.HTTPFlow:
    flow = tflow.twebsocketflow(messages=False)
    flow.websocket = WebSocketData()
    if kept:
        host.kept_ids.add(flow.id)
    return flow


def say(
    rec: WebSocketRecorder, flow: http.HTTPFlow, content: bytes, from_client: bool, text: bool
) -> WebSocketMessage:
    assert flow.websocket is not None
    message = WebSocketMessage(Opcode.TEXT if text else Opcode.BINARY, from_client, content)
    flow.websocket.messages.append(message)
    rec.websocket_message(flow)
    return message


def decoded(host: FakeHost) -> list[dict[str, Any]]:
    codec = Codec()
    return [codec.decode(sent.value) for sent in host.sink.sent]


def end(rec: WebSocketRecorder, flow: http.HTTPFlow, code: int = 1000, reason: str = "") -> None:
    assert flow.websocket is not None
    flow.websocket.close_code = code
    flow.websocket.close_reason = reason
    flow.websocket.closed_by_client = True
    flow.websocket.timestamp_end = 1_700_000_100.5
    rec.websocket_end(flow)


def test_ws_unit_messages_and_end_become_events_with_the_upgrade_key() -> None:
    host = FakeHost()
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    first = say(rec, flow, b"hello", True, True)
    say(rec, flow, b"\x00\x01", False, False)
    end(rec, flow, 1000, "bye")
    events = decoded(host)
    assert [e["kind"] for e in events] == [
        KIND_WEBSOCKET_MESSAGE,
        KIND_WEBSOCKET_MESSAGE,
        KIND_WEBSOCKET_END,
    ]
    assert [e["id"] for e in events] == [f"{flow.id}/0", f"{flow.id}/1", f"{flow.id}/end"]
    assert {sent.key for sent in host.sink.sent} == {flow.client_conn.id.encode()}
    assert host.sink.sent[0].timestamp_ms == int(first.timestamp * 1000)
    assert events[0]["request_start_us"] == round(first.timestamp * 1_000_000)
    assert events[0]["websocket"] == {
        "upgrade_id": flow.id,
        "index": 0,
        "from_client": True,
        "text": True,
        "payload": b"hello",
        "payload_truncated": False,
        "payload_length": 5,
        "close_code": None,
        "messages_not_recorded": 0,
    }
    assert events[1]["websocket"]["from_client"] is False
    assert events[1]["websocket"]["text"] is False
    last = events[2]
    assert last["websocket"]["index"] == 2
    assert last["websocket"]["close_code"] == 1000
    assert last["websocket"]["payload"] == b"bye"
    assert last["request_start_us"] == 1_700_000_100_500_000
    for event in events:
        assert event["method"] == "GET" and event["path"] == b"/ws"
        assert event["response"] is None and event["request"]["body"] == b""
    assert (rec.messages, rec.ends, rec.messages_not_recorded) == (2, 1, 0)
    assert rec.open_flows() == []


def test_ws_unit_payload_over_the_cap_is_cut_with_its_length() -> None:
    host = FakeHost(max_body_bytes=16)
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    say(rec, flow, b"x" * 100, True, False)
    say(rec, flow, b"y" * 16, True, False)
    (cut, whole) = [e["websocket"] for e in decoded(host)]
    assert (cut["payload"], cut["payload_truncated"], cut["payload_length"]) == (
        b"x" * 16,
        True,
        100,
    )
    assert (whole["payload_truncated"], whole["payload_length"]) == (False, 16)


def test_ws_unit_a_long_session_keeps_one_message_in_memory() -> None:
    host = FakeHost()
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    assert flow.websocket is not None
    for i in range(5000):
        say(rec, flow, b"m%d" % i, i % 2 == 0, True)
        assert len(flow.websocket.messages) == 1
    assert flow.websocket.messages[-1].content == b"m4999"
    assert len(host.sink.sent) == 5000


def test_ws_unit_a_filtered_upgrade_records_no_messages_and_keeps_none() -> None:
    host = FakeHost()
    rec = WebSocketRecorder(host)
    flow = upgrade(host, kept=False)
    rec.websocket_start(flow)
    assert flow.websocket is not None
    for _ in range(3):
        say(rec, flow, b"secret", True, True)
    end(rec, flow)
    assert host.sink.sent == []
    assert len(flow.websocket.messages) == 1
    assert (rec.messages, rec.ends) == (0, 0)


def test_ws_unit_messages_the_queue_refused_are_counted_on_the_end() -> None:
    host = FakeHost()
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    say(rec, flow, b"a", True, True)
    host.sink.full = True
    say(rec, flow, b"b", True, True)
    say(rec, flow, b"c", False, True)
    host.sink.full = False
    end(rec, flow)
    events = decoded(host)
    assert [e["kind"] for e in events] == [KIND_WEBSOCKET_MESSAGE, KIND_WEBSOCKET_END]
    assert events[1]["websocket"]["messages_not_recorded"] == 2
    assert events[1]["websocket"]["index"] == 3
    assert (rec.messages, rec.ends, rec.messages_not_recorded) == (3, 1, 2)


def test_ws_unit_a_broken_message_is_counted_failed_and_the_flow_goes_on() -> None:
    host = FakeHost()
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    host.codec = None  # the sink is gone: the event cannot be written
    say(rec, flow, b"a", True, True)
    say(rec, flow, b"b", False, True)
    assert (rec.convert_failed, rec.messages_not_recorded) == (2, 2)
    assert flow.websocket is not None and len(flow.websocket.messages) == 1  # still dropped


def test_ws_unit_json_redaction_rules_apply_to_text_messages() -> None:
    redactor = Redactor.from_options(json_specs=["$.password=mask"])
    host = FakeHost(redactor=redactor, max_body_bytes=1024)
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    say(rec, flow, b'{"user": "ann", "password": "hunter2"}', True, True)
    say(rec, flow, b'{"password": "binary is kept"}', True, False)
    say(rec, flow, b"plain text", True, True)
    masked, binary, plain = decoded(host)
    assert masked["websocket"]["payload"] == b'{"user":"ann","password":"***"}'
    assert "websocket.body:$.password=mask" in masked["recorder"]["redactions"]
    assert binary["websocket"]["payload"] == b'{"password": "binary is kept"}'
    assert plain["websocket"]["payload"] == b"plain text"


def test_ws_unit_a_cut_json_text_message_is_dropped_not_recorded_half() -> None:
    redactor = Redactor.from_options(json_specs=["$.password=mask"])
    host = FakeHost(redactor=redactor, max_body_bytes=8)
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    rec.websocket_start(flow)
    say(rec, flow, b'{"password": "hunter2"}', True, True)
    (event,) = decoded(host)
    assert event["websocket"]["payload"] == b""
    assert event["websocket"]["payload_truncated"] is True
    assert event["websocket"]["payload_length"] == 23


def test_ws_unit_query_secrets_of_the_upgrade_path_are_redacted() -> None:
    host = FakeHost(redactor=Redactor.from_options(), max_body_bytes=64)
    rec = WebSocketRecorder(host)
    flow = upgrade(host)
    flow.request.path = "/ws?api_key=s3cret&room=1"
    rec.websocket_start(flow)
    say(rec, flow, b"x", True, True)
    (event,) = decoded(host)
    assert b"s3cret" not in event["path"] and b"room=1" in event["path"]


def test_ws_unit_counts_add_websocket_events_to_the_balance() -> None:
    counts = Counts.of(
        SinkStats(delivered=4, queue_full=1),
        seen=1,
        convert_failed=0,
        filtered=0,
        cut_off=0,
        ws_messages=3,
        ws_ends=1,
        ws_messages_not_recorded=1,
    )
    assert counts.events == 5 and counts.balanced
    assert counts.line().endswith("ws_messages=3 ws_ends=1 ws_messages_not_recorded=1")
    assert (
        "ws_"
        not in Counts.of(
            SinkStats(delivered=1), seen=1, convert_failed=0, filtered=0, cut_off=0
        ).line()
    )
    assert (counts + counts).ws_messages == 6


@in_loop
async def test_ws_unit_the_recorder_follows_its_filter_for_messages(
    kafka: Kafka, caplog: pytest.LogCaptureFixture
) -> None:
    from recorder.addon import Recorder

    topic = kafka.new_topic(1)
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic, trafficmirror_filter="~u /chat")
        kept = tflow.twebsocketflow(messages=False)
        kept.request.path = "/chat"
        kept.websocket = WebSocketData()
        skipped = tflow.twebsocketflow(messages=False)
        skipped.websocket = WebSocketData()
        for flow in (kept, skipped):
            rec.response(flow)  # the 101, before websocket_start as in mitmproxy
            rec.websockets.websocket_start(flow)
            for text in (b"one", b"two"):
                assert flow.websocket is not None
                flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, text))
                rec.websockets.websocket_message(flow)
            flow.websocket.close_code = 1000
            rec.websockets.websocket_end(flow)
        await asyncio.sleep(0)
        rec.done()
    counts = rec.last_counts
    assert counts is not None
    assert (counts.seen, counts.filtered, counts.ws_messages, counts.ws_ends) == (1, 1, 2, 1)
    assert counts.recorded == 4 and counts.balanced
    events = [event for _, event in read_events(kafka.bootstrap_servers, topic, 4)]
    assert [e["kind"] for e in events] == [
        KIND_HTTP,
        KIND_WEBSOCKET_MESSAGE,
        KIND_WEBSOCKET_MESSAGE,
        KIND_WEBSOCKET_END,
    ]
    assert all(e["path"] == b"/chat" for e in events)
