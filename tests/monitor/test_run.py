"""`Monitor.judge` on encoded records, without Kafka: naming, signatures' cooldown, decoding."""

from __future__ import annotations

from dataclasses import replace

from monitor.config import MonitorConfig, Thresholds
from monitor.findings import Finding
from monitor.run import Monitor
from schemas.codec import Codec
from tests.replayer.events import make_event
from trafficmirror.plumbing.kafka import KafkaSettings

US = 1_000_000
T0 = 1_760_000_000 * US
SQLI = "/items?id=1%27%20OR%20%271%27%3D%271"


class Message:
    def __init__(self, value: bytes, offset: int = 0) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "traffic"

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return self._offset


class Writer:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def emit(self, finding: Finding) -> None:
        self.findings.append(finding)


def monitor(**config: object) -> tuple[Monitor, Writer]:
    settings = KafkaSettings("127.0.0.1:9")
    mon = Monitor(MonitorConfig(settings, "traffic", "g", **config))  # type: ignore[arg-type]
    writer = Writer()
    mon._writer = writer  # type: ignore[assignment]
    return mon, writer


def judge(mon: Monitor, offset: int = 0, **event: object) -> None:
    mon.judge(Message(Codec().encode(make_event(**event)).value, offset))  # type: ignore[arg-type]


def test_one_signature_alert_per_kind_client_and_endpoint_per_cooldown() -> None:
    mon, writer = monitor()
    for i in range(5):  # a scanner's payloads, a second apart
        judge(mon, i, path=SQLI, request_start_us=T0 + i * US)
    judge(mon, 5, path=SQLI, request_start_us=T0 + 5 * US, client=("10.9.9.9", 1))
    judge(mon, 6, path=SQLI.replace("/items", "/orders"), request_start_us=T0 + 6 * US)
    judge(mon, 7, path=SQLI, request_start_us=T0 + 70 * US)  # after the 60 s cooldown
    alerts = [f for f in writer.findings if f.kind == "sql_injection"]
    assert [(f.client, f.endpoint) for f in alerts] == [
        ("addr:127.0.0.1", "GET /items"),
        ("addr:10.9.9.9", "GET /items"),
        ("addr:127.0.0.1", "GET /orders"),
        ("addr:127.0.0.1", "GET /items"),
    ]
    assert alerts[0].source is not None and alerts[0].source.offset == 0
    assert mon.stats.exchanges == 8


def test_clients_by_header_hmac_and_undecodable_records_counted() -> None:
    mon, writer = monitor(
        client_header="X-Client-Id",
        client_key=b"k" * 32,
        thresholds=replace(Thresholds(), signatures=("scanner",)),
    )
    judge(mon, headers=[("X-Client-Id", "tenant-a"), ("User-Agent", "Nikto/2.5.0")])
    (finding,) = writer.findings
    assert finding.kind == "scanner" and finding.client is not None
    assert finding.client.startswith("hmac:") and "tenant-a" not in finding.client
    mon.judge(Message(b"not an event"))  # type: ignore[arg-type]
    assert mon.stats.undecodable == 1 and mon.stats.exchanges == 1


def test_websocket_message_and_end_events_are_counted_not_judged() -> None:
    mon, writer = monitor(thresholds=replace(Thresholds(), signatures=("sql_injection",)))
    for n, kind in enumerate(("websocket_message", "websocket_end")):
        event = {**make_event(path=SQLI), "kind": kind, "response": None}
        event["websocket"] = {
            "upgrade_id": "up", "index": n, "from_client": True, "text": True,
            "payload": b"hello", "payload_truncated": False, "payload_length": 5,
            "close_code": None, "messages_not_recorded": 0,
        }  # fmt: skip
        mon.judge(Message(Codec().encode(event).value, n))  # type: ignore[arg-type]
    assert writer.findings == [] and mon.stats.exchanges == 0
    assert mon.stats.websocket == 2
    assert "2 WebSocket events not judged" in mon.stats.line()
    judge(mon, 2, path=SQLI)  # the upgrade (an http event) is judged as ever
    assert mon.stats.exchanges == 1 and [f.kind for f in writer.findings] == ["sql_injection"]
