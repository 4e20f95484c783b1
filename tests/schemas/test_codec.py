"""The codec: round trips, wire formats, old versions, corrupt input."""

from __future__ import annotations

import copy
import json
import struct
from typing import Any

import pytest

from schemas import Codec, available_versions, load_schema
from schemas.codec import SCHEMA_DIR, schema_fingerprint
from trafficmirror.plumbing.errors import DecodeError


def full_event() -> dict[str, Any]:
    """An event with every field set to a non-default value."""
    return {
        "id": "7f0c6a4e-1b2c-4d5e-8f90-123456789abc",
        "request_start_us": 1_700_000_000_000_001,
        "request_end_us": 1_700_000_000_000_502,
        "response_start_us": 1_700_000_000_010_003,
        "response_end_us": 1_700_000_000_010_904,
        "client": {"host": "10.1.2.3", "port": 51234},
        "server": {"host": "127.0.0.1", "port": 8080},
        "scheme": "https",
        "method": "POST",
        "authority": "shop.example.com",
        "path": b"/api/orders?id=17&x=%C3%A9",
        "http_version": "HTTP/1.1",
        "request": {
            "headers": [
                b"Host",
                b"shop.example.com",
                b"X-Dup",
                b"1",
                b"x-dup",
                b"2",
                b"Content-Type",
                b"application/json",
            ],
            "body": b'{"qty": 2}',
            "body_truncated": True,
            "body_length": 12345,
            "trailers": [b"X-Checksum", b"abc"],
        },
        "response": {
            "status": 201,
            "reason": b"Created",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": [b"Content-Type", b"application/octet-stream"],
                "body": bytes(range(256)),
                "body_truncated": False,
                "body_length": 256,
                "trailers": None,
            },
        },
        "error": "upstream closed early",
        "recorder": {
            "recorder_id": "rec-1",
            "sampling_rate": 0.25,
            "redactions": ["request.header:authorization=mask"],
            "capture": "proxy",
        },
        "kind": "http",
        "websocket": None,
    }


def test_round_trip_keeps_every_field() -> None:
    codec = Codec()
    event = full_event()
    encoded = codec.encode(event)
    assert codec.decode(encoded.value) == event


def test_single_object_encoding_layout() -> None:
    codec = Codec()
    value = codec.encode(full_event()).value
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == schema_fingerprint(load_schema("http_exchange"))
    assert codec.fingerprint == value[2:10]


def test_kafka_headers_name_content_type_and_fingerprint() -> None:
    codec = Codec()
    headers = dict(codec.encode(full_event()).headers)
    assert headers["content-type"].startswith(b"application/avro")
    assert b"single-object" in headers["content-type"]
    assert headers["trafficmirror-schema-fingerprint"] == codec.fingerprint.hex().encode()


def test_every_shipped_version_decodes_into_the_current_one() -> None:
    codec = Codec()
    for version in available_versions("http_exchange"):
        writer = Codec(write_version=version)
        decoded = codec.decode(writer.encode(full_event()).value)
        assert decoded["id"] == full_event()["id"]


def test_a_v1_event_decodes_as_a_proxy_capture() -> None:
    # v2 added recorder.capture; every event written before it is an in-path capture.
    event = full_event()
    del event["recorder"]["capture"]  # type: ignore[misc]
    decoded = Codec().decode(Codec(write_version=1).encode(event).value)
    assert decoded["recorder"]["capture"] == "proxy"
    mirror = full_event()
    mirror["recorder"]["capture"] = "mirror"
    mirror["response"] = None
    assert Codec().decode(Codec().encode(mirror).value)["recorder"]["capture"] == "mirror"


def test_older_writer_schema_is_resolved_with_defaults() -> None:
    # An "older" writer: v1 without the optional fields that have defaults.
    old = json.loads((SCHEMA_DIR / "http_exchange.v1.avsc").read_text())
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("error", "response_end_us")]
    codec = Codec(extra_writers=[copy.deepcopy(old)])
    from io import BytesIO

    from fastavro import parse_schema, schemaless_writer

    parsed = parse_schema(old)
    event = full_event()
    del event["error"], event["response_end_us"]
    buf = BytesIO()
    buf.write(b"\xc3\x01" + schema_fingerprint(parsed))
    schemaless_writer(buf, parsed, event)
    decoded = codec.decode(buf.getvalue())
    assert decoded["error"] is None
    assert decoded["response_end_us"] is None
    assert decoded["method"] == "POST"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"garbage!!", "not a trafficmirror event"),
        (b"\xc3\x01\x00\x01", "truncated"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown schema fingerprint"),
    ],
)
def test_bad_records_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Codec().decode(data)


def test_truncated_body_is_a_decode_error() -> None:
    value = Codec().encode(full_event()).value
    with pytest.raises(DecodeError):
        Codec().decode(value[: len(value) // 2])


def test_trailing_garbage_is_a_decode_error() -> None:
    value = Codec().encode(full_event()).value
    with pytest.raises(DecodeError, match="trailing"):
        Codec().decode(value + b"\x00")


class FakeRegistry:
    """Stands in for confluent_kafka's SchemaRegistryClient (a unit-test fake)."""

    def __init__(self) -> None:
        self.schemas: dict[int, Any] = {}

    def register_schema(self, subject: str, schema: Any) -> int:
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = schema
        return schema_id

    def get_schema(self, schema_id: int) -> Any:
        return self.schemas[schema_id]


def test_registry_framing_round_trip() -> None:
    registry = FakeRegistry()
    codec = Codec(subject="traffic-value", registry_client=registry)
    value = codec.encode(full_event()).value
    assert value[0] == 0 and struct.unpack(">I", value[1:5]) == (1,)
    assert b"encoding=confluent" in dict(codec.encode(full_event()).headers)["content-type"]
    assert Codec(registry_client=registry).decode(value) == full_event()


def test_registry_record_without_registry_says_why() -> None:
    codec = Codec(subject="traffic-value", registry_client=FakeRegistry())
    value = codec.encode(full_event()).value
    with pytest.raises(DecodeError, match="no --schema-registry-url"):
        Codec().decode(value)
