"""Schema v3 of the event: WebSocket kinds, and every older version read as http."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import Codec, available_versions
from schemas.records import HttpExchange
from tests.schemas.test_codec import full_event


def websocket_event(kind: str = "websocket_message") -> dict[str, Any]:
    """A v3 event holding one WebSocket message (or the end), every field set."""
    event = full_event()
    event.update(
        id="flow-1/3",
        kind=kind,
        request_end_us=None,
        response_start_us=None,
        response_end_us=None,
        response=None,
        error=None,
        request={
            "headers": [],
            "body": b"",
            "body_truncated": False,
            "body_length": 0,
            "trailers": None,
        },
        websocket={
            "upgrade_id": "flow-1",
            "index": 3,
            "from_client": kind == "websocket_message",
            "text": True,
            "payload": b'{"say": "hi"}',
            "payload_truncated": True,
            "payload_length": 70000,
            "close_code": 1001 if kind == "websocket_end" else None,
            "messages_not_recorded": 2 if kind == "websocket_end" else 0,
        },
    )
    return event


def test_shipped_versions_are_one_two_and_three() -> None:
    assert tuple(available_versions("http_exchange"))[:3] == (1, 2, 3)


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
def test_an_old_event_decodes_as_an_http_exchange(version: int) -> None:
    event = full_event()
    if version == 1:
        del event["recorder"]["capture"]
    decoded = Codec().decode(Codec(write_version=version).encode(event).value)
    assert decoded["kind"] == "http"
    assert decoded["websocket"] is None
    assert decoded["request"] == full_event()["request"]
    assert decoded["response"] == full_event()["response"]


@pytest.mark.parametrize("kind", ["websocket_message", "websocket_end"])
def test_a_v3_websocket_event_round_trips(kind: str) -> None:
    event = websocket_event(kind)
    typed: HttpExchange = Codec().decode(Codec(write_version=3).encode(event).value)
    assert typed == event


def test_a_v3_http_event_round_trips_with_no_websocket() -> None:
    event = full_event()
    decoded = Codec().decode(Codec(write_version=3).encode(event).value)
    assert decoded == event and decoded["kind"] == "http"


def test_the_newest_reader_reads_every_version_side_by_side() -> None:
    # One consumer meets a topic written by recorders of every version.
    codec = Codec()
    values = [
        Codec(write_version=version).encode(full_event()).value
        for version in available_versions("http_exchange")
    ]
    values.append(Codec().encode(websocket_event()).value)
    decoded = [codec.decode(value) for value in values]
    assert [d["kind"] for d in decoded] == ["http"] * (len(values) - 1) + ["websocket_message"]
    assert decoded[-1]["websocket"] == websocket_event()["websocket"]
