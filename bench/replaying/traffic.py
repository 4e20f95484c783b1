"""The recorded traffic the replays read: synthetic exchanges on the in-memory broker.

Small GETs of a JSON API, encoded with the real codec and keyed and
timestamped the way the recorder does, so the replayer does what it does with
recorded traffic. Connection c goes to partition c % PARTITIONS, which lets
two replay processes split the topic by partition.
"""

from __future__ import annotations

#: Partitions per topic. The in-memory broker keeps about 5 MB per partition
#: (older records are dropped), so 20,000 exchanges need four.
PARTITIONS = 4
#: Recorded pace of the paced topic: one exchange every 2 ms = 500/s.
PACED_GAP_US = 2000
BASE_US = 1_760_000_000_000_000
RESPONSE_BODY = b'{"id":1,"name":"widget","price":9.5,"tags":["a","b"]}'


def make_event(
    index: int, start_us: int, prefix: str, version: str = "HTTP/1.1"
) -> dict[str, object]:
    """A small recorded GET, like a browser or service calling a JSON API (in `version`)."""
    conn = index % 200
    item = index % 5000
    headers = [
        (b"Host", b"shop.example.com"),
        (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
        (b"Accept", b"application/json"),
        (b"Accept-Encoding", b"gzip, deflate"),
        (b"Accept-Language", b"en-US,en;q=0.9"),
        (b"Cookie", b"session=3f9a1c0e7d; theme=dark"),
        (b"X-Request-Id", f"req-{index:08d}".encode()),
        (b"Connection", b"keep-alive"),
    ]
    flat = [part for pair in headers for part in pair]
    return {
        "id": f"{prefix}-{index}",
        "request_start_us": start_us,
        "request_end_us": start_us + 80,
        "response_start_us": start_us + 900,
        "response_end_us": start_us + 950,
        "client": {"host": "10.1.2.3", "port": 40000 + conn},
        "server": {"host": "10.0.0.1", "port": 8080},
        "scheme": "http",
        "method": "GET",
        "authority": "shop.example.com",
        "path": f"/api/items/{item}?fields=name,price".encode(),
        "http_version": version,
        "request": {
            "headers": flat,
            "body": b"",
            "body_truncated": False,
            "body_length": 0,
            "trailers": None,
        },
        "response": {
            "status": 200,
            "reason": b"OK",
            "http_version": version,
            "message": {
                "headers": [b"Content-Type", b"application/json"],
                "body": RESPONSE_BODY,
                "body_truncated": False,
                "body_length": len(RESPONSE_BODY),
                "trailers": None,
            },
        },
        "error": None,
        "recorder": {
            "recorder_id": "bench",
            "sampling_rate": 1.0,
            "redactions": [],
            "capture": "proxy",
        },
        "kind": "http",
        "websocket": None,
    }


def fill(
    bootstrap: str, topic: str, count: int, gap_us: int, prefix: str, version: str = "HTTP/1.1"
) -> None:
    """Write `count` exchanges `gap_us` apart; connection c goes to partition c % 4.

    `version`: what the events say the exchange was recorded in (HTTP/2.0: the
    replay sends them as HTTP/2 under `--http-version auto`).
    """
    from confluent_kafka import Producer

    from schemas.codec import Codec

    codec = Codec()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500000}
    )
    for index in range(count):
        start_us = BASE_US + index * gap_us
        event = make_event(index, start_us, prefix, version)
        encoded = codec.encode(event)
        client = event["client"]
        port = client["port"]  # type: ignore[index]
        producer.produce(
            topic,
            value=encoded.value,
            key=f"10.1.2.3:{port}".encode(),
            headers=encoded.headers,
            timestamp=start_us // 1000,
            partition=(index % 200) % PARTITIONS,
        )
        if index % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered to {topic}")
