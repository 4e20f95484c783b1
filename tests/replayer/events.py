"""Build `HttpExchange` events directly, and put them into Kafka, for replayer tests.

`make_event()` gives a complete, schema-valid event with sensible defaults;
every argument overrides one part. `produce_events()` encodes with the real
codec and writes to a topic with the recorder's key and timestamp conventions
(key = client connection, timestamp = request start), so the replayer sees
exactly what a recording would give it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.codec import Codec

_ids = itertools.count()
_BASE_US = 1_760_000_000_000_000


def flat(headers: Iterable[tuple[str | bytes, str | bytes]]) -> list[bytes]:
    """[(name, value), ...] → the schema's flat [name, value, ...] list of bytes."""
    out: list[bytes] = []
    for name, value in headers:
        out.append(name.encode("latin-1") if isinstance(name, str) else name)
        out.append(value.encode("utf-8") if isinstance(value, str) else value)
    return out


def make_event(
    *,
    method: str = "GET",
    path: str | bytes = "/",
    headers: Sequence[tuple[str | bytes, str | bytes]] | None = None,
    body: bytes = b"",
    body_truncated: bool = False,
    body_length: int | None = None,
    exchange_id: str | None = None,
    request_start_us: int | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    authority: str = "shop.example.com",
    status: int | None = 200,
    response_body: bytes = b"{}",
    error: str | None = None,
    trailers: Sequence[tuple[str | bytes, str | bytes]] | None = None,
    capture: str = "proxy",
) -> dict[str, Any]:
    """A complete HttpExchange event; arguments override the defaults.

    `capture="mirror"` makes a `record --mirror` event: no response, no error.
    """
    number = next(_ids)
    start = request_start_us if request_start_us is not None else _BASE_US + number * 1000
    if headers is None:
        headers = [("Host", authority), ("User-Agent", "test/1"), ("Accept", "*/*")]
    response = None
    if status is not None and capture != "mirror":
        response = {
            "status": status,
            "reason": b"OK",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": flat([("Content-Type", "application/json")]),
                "body": response_body,
                "body_truncated": False,
                "body_length": len(response_body),
                "trailers": None,
            },
        }
    return {
        "id": exchange_id or f"ex-{number}",
        "request_start_us": start,
        "request_end_us": start + 100,
        "response_start_us": start + 500 if response else None,
        "response_end_us": start + 600 if response else None,
        "client": {"host": client[0], "port": client[1]},
        "server": {"host": "127.0.0.1", "port": 8080},
        "scheme": "http",
        "method": method,
        "authority": authority,
        "path": path.encode() if isinstance(path, str) else path,
        "http_version": "HTTP/1.1",
        "request": {
            "headers": flat(headers),
            "body": body,
            "body_truncated": body_truncated,
            "body_length": len(body) if body_length is None else body_length,
            "trailers": flat(trailers) if trailers is not None else None,
        },
        "response": response,
        "error": error,
        "recorder": {
            "recorder_id": "test",
            "sampling_rate": 1.0,
            "redactions": [],
            "capture": capture,
        },
        "kind": "http",
        "websocket": None,
    }


def connection_key(event: dict[str, Any]) -> bytes:
    """The recorder's message key: the client connection."""
    client = event["client"]
    return f"{client['host']}:{client['port']}".encode()


def produce_events(
    bootstrap_servers: str,
    topic: str,
    events: Iterable[dict[str, Any]],
    partition: int | None = None,
    raw: Iterable[tuple[int, bytes]] = (),
    spread: int | None = None,
) -> None:
    """Encode and write `events` (plus `raw` (partition, value) garbage records), then flush.

    `spread=N`: event number n goes to partition n % N (all in one flush).
    """
    codec = Codec()
    producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 5})
    for number, event in enumerate(events):
        encoded = codec.encode(event)
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        elif spread is not None:
            kwargs["partition"] = number % spread
        producer.produce(
            topic,
            value=encoded.value,
            key=connection_key(event),
            headers=encoded.headers,
            timestamp=event["request_start_us"] // 1000,
            **kwargs,
        )
    for part, value in raw:
        producer.produce(topic, value=value, key=b"garbage", partition=part)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} test records not delivered"


def watermarks(bootstrap_servers: str, topic: str, partition: int) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "tm-test-probe"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return int(low), int(high)
    finally:
        consumer.close()
