"""What judging one exchange costs the monitor: decode, name, signatures, rate rules.

Builds N encoded events of a demo-like mix (searches with queries, JSON POSTs,
uploads, GETs with ids; 350 clients, a browser user agent, cookies), then
feeds them to `monitor.run.Monitor.judge` in-process, as the poll loop does,
without Kafka: the figure is the monitor's own CPU per exchange, the ceiling
of one member. Also with the signature detectors off, to show their share.
Prints one table; run it a few times, the machine's load moves it.

    .venv/bin/python bench/monitoring.py [--events 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

from monitor.config import MonitorConfig, Thresholds
from monitor.run import Monitor
from schemas.codec import Codec
from trafficmirror.plumbing.kafka import KafkaSettings

T0 = 1_760_000_000_000_000
PATHS = (
    "/search?q=red%20hat&page=2&tag=a&tag=b",
    "/api/orders",
    "/users/17/orders",
    "/upload/5.bin",
    "/api/orders/9?soft=1",
)


class Message:
    """What `judge` needs of a confluent_kafka Message."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "bench"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def event(i: int) -> dict[str, Any]:
    kind = i % 5
    headers = [
        b"Host", b"shop.example.com",
        b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
        b"Accept", b"*/*",
        b"Cookie", b"session=abc123; pref=dark",
    ]  # fmt: skip
    body = b""
    if kind == 1:
        headers += [b"Content-Type", b"application/json"]
        body = b'{"sku": "SKU-12", "qty": 2, "note": "gift wrap, please"}'
    elif kind == 3:
        headers += [b"Content-Type", b"application/octet-stream"]
        body = bytes(range(256)) * 16
    message = {"headers": headers, "body": body, "body_truncated": False,
               "body_length": len(body), "trailers": None}  # fmt: skip
    response = {"status": 200, "reason": b"OK", "http_version": "HTTP/1.1",
                "message": {"headers": [], "body": b"{}", "body_truncated": False,
                            "body_length": 2, "trailers": None}}  # fmt: skip
    start = T0 + i * 500
    return {
        "id": f"ex-{i}", "request_start_us": start, "request_end_us": start + 100,
        "response_start_us": start + 300, "response_end_us": start + 400,
        "client": {"host": f"10.0.{i % 7}.{i % 50}", "port": 40000},
        "server": {"host": "127.0.0.1", "port": 8080}, "scheme": "http",
        "method": ("GET", "POST", "GET", "PUT", "DELETE")[kind],
        "authority": "shop.example.com", "path": PATHS[kind].encode(),
        "http_version": "HTTP/1.1", "request": message, "response": response, "error": None,
        "recorder": {"recorder_id": "bench", "sampling_rate": 1.0, "redactions": [],
                     "capture": "proxy"},
    }  # fmt: skip


def run(messages: list[Message], thresholds: Thresholds) -> float:
    """Exchanges per second through a fresh Monitor."""
    config = MonitorConfig(KafkaSettings("127.0.0.1:9"), "bench", "g", thresholds=thresholds)
    monitor = Monitor(config)
    started = time.perf_counter()
    for message in messages:
        monitor.judge(message)
    return len(messages) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    codec = Codec()
    messages = [Message(codec.encode(event(i)).value, i) for i in range(args.events)]
    cases = {
        "everything (defaults)": Thresholds(),
        "rate rules only (--signatures none)": replace(Thresholds(), signatures=()),
    }
    print(f"{args.events} exchanges, {args.rounds} rounds; exchanges/s (median, min-max)")
    print(f"| {'case':<40} | {'median':>8} | {'range':>15} | {'us/exchange':>11} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 17}|{'-' * 13}|")
    for label, thresholds in cases.items():
        rates = [run(messages, thresholds) for _ in range(args.rounds)]
        median = statistics.median(rates)
        span = f"{min(rates):.0f}-{max(rates):.0f}"
        print(f"| {label:<40} | {median:>8.0f} | {span:>15} | {1e6 / median:>11.1f} |")


if __name__ == "__main__":
    main()
