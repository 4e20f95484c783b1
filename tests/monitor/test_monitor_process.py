"""`trafficmirror monitor` as a real process behind a real recorder, on the mock broker.

One module-wide set of processes (a sample app, `record` in front of it, and
`monitor` following the topic) sees, in order: the demo's generated traffic
(no alert may come of it), a planted SQL-injection request, and a planted
burst (one client at 20x the rate it kept before). Alerts are read back from
`<topic>.alerts` and decoded with the alert schema. The monitor runs with a
4 s window and 3 s warm-up so the baseline is learned in seconds; the
detection delay with the default window is a unit test (test_anomalies.py).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from monitor.identity import HMAC_DIGITS
from schemas.codec import Codec
from schemas.records import Alert
from tests.support import Kafka, Proc, Procs, free_port, wait_port
from trafficmirror.demo.apps import SampleApp
from trafficmirror.demo.traffic import plan, send

pytestmark = pytest.mark.e2e

KEY = b"monitor-test-key-0123456789"
SECRET = "Bearer sk_live_do_not_leak_4242"


class Alerts:
    """Reads `<topic>.alerts` from the start, by direct assignment."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.codec = Codec("alert")
        self.raw: list[bytes] = []
        self.seen: list[Alert] = []
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )

    def poll(self, seconds: float) -> list[Alert]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                self.raw.append(bytes(msg.value()) + bytes(msg.key() or b""))
                self.seen.append(self.codec.decode_alert(msg.value()))
        return self.seen

    def wait_for(self, match: Callable[[Alert], bool], timeout: float) -> Alert:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.poll(0.2):
                if match(alert):
                    return alert
        raise AssertionError(f"no matching alert within {timeout}s; seen: {self.seen}")


@dataclass
class Stack:
    recorder_port: int
    metrics_port: int
    monitor: Proc
    alerts: Alerts

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            text = response.read().decode()
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(match[1]) if match else 0.0

    def judged(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metric("trafficmirror_monitor_exchanges_total") < count:
            assert time.monotonic() < deadline, "the monitor did not judge the traffic in time"
            time.sleep(0.1)


def ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the monitor never became ready")


@pytest.fixture(scope="module")
def stack(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    topic = kafka.new_topic(4, prefix="monitor")
    kafka.create_topic(f"{topic}.alerts", 2)
    folder: Path = tmp_path_factory.mktemp("monitor")
    key_file = folder / "key"
    key_file.write_bytes(KEY)
    procs = Procs(folder)
    listen, metrics = free_port(), free_port()
    try:
        with SampleApp() as app:
            procs.start(
                "recorder",
                ["record", "-b", kafka.bootstrap_servers, "-t", topic, "--upstream", app.url,
                 "--listen", f"127.0.0.1:{listen}"],
            )  # fmt: skip
            monitor = procs.start(
                "monitor",
                ["monitor", "-b", kafka.bootstrap_servers, "-t", topic, "--group", f"{topic}-mon",
                 "--metrics-port", str(metrics), "--client-header", "X-Client-Id",
                 "--client-key-file", str(key_file), "--threshold", "window-seconds=4",
                 "--threshold", "warmup-seconds=3", "--monitor-id", "monitor-under-test"],
            )  # fmt: skip
            wait_port(listen)
            ready(metrics)
            alerts = Alerts(kafka.bootstrap_servers, f"{topic}.alerts", 2)
            try:
                yield Stack(listen, metrics, monitor, alerts)
            finally:
                alerts.consumer.close()
    finally:
        procs.close()
        print(procs.dump())  # shown when a test failed


def get(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_demo_traffic_raises_no_alert(stack: Stack) -> None:
    sent = send("127.0.0.1", stack.recorder_port, plan(200, connections=6))
    assert all(p.status == 200 for p in sent)
    stack.judged(200)
    # Let every second of it close (lateness 1 s, judged on the next quiet tick).
    assert stack.alerts.poll(3.0) == []


def test_a_planted_sql_injection_is_an_alert_without_the_secret(stack: Stack) -> None:
    started = time.monotonic()
    path = "/items?id=1%27%20OR%20%271%27%3D%271&page=2"
    assert get(stack.recorder_port, path, {"Authorization": SECRET}) == 200
    alert = stack.alerts.wait_for(lambda a: a["kind"] == "sql_injection", timeout=10)
    assert time.monotonic() - started < 10
    assert alert["severity"] == "critical"
    assert alert["location"] == "query:id"
    assert (alert["detector"] or "").startswith("libinjection-sqli:")
    assert alert["client"] == "addr:127.0.0.1"
    assert alert["endpoint"] == "GET /items"
    assert alert["monitor_id"] == "monitor-under-test"
    assert alert["source"] is not None and len(alert["exchange_ids"]) == 1
    assert not any(SECRET.encode() in raw or b"sk_live" in raw for raw in stack.alerts.raw)
    assert "sk_live" not in stack.monitor.stderr


def paced(
    port: int,
    headers: dict[str, str],
    rate: float,
    started: float,
    until: float,
    stop: threading.Event,
    sent: list[float],
    errors: list[BaseException],
) -> None:
    """GETs on one keep-alive connection at `rate` per second from `started`, until `until`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        n = 0
        while not stop.is_set() and time.monotonic() < until:
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            conn.request("GET", f"/catalog/{n % 50}", headers=headers)
            conn.getresponse().read()
            sent.append(time.monotonic())
            n += 1
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        conn.close()


def test_a_planted_burst_is_an_alert_within_10s(stack: Stack) -> None:
    client = "burst-client-7"
    expected = "hmac:" + hmac.new(KEY, client.encode(), hashlib.sha256).hexdigest()[:HMAC_DIGITS]
    headers = {"X-Client-Id": client}
    stop = threading.Event()
    errors: list[BaseException] = []
    usual: list[float] = []
    # Its usual rate: 2 requests/s for 8 s (warm-up 3 s + the 4 s window + 1).
    began = time.monotonic()
    paced(stack.recorder_port, headers, 2, began, began + 8, stop, usual, errors)
    # Then 20x: 40 requests/s, over 4 connections (a loaded machine still keeps up),
    # until the alert (at most 12 s).
    burst_started = time.monotonic()
    burst: list[float] = []
    threads = [
        threading.Thread(
            target=paced,
            args=(
                stack.recorder_port,
                headers,
                10,
                burst_started + i / 40,
                burst_started + 12,
                stop,
                burst,
                errors,
            ),
        )  # fmt: skip
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        alert = stack.alerts.wait_for(
            lambda a: a["kind"] == "client_rate" and a["client"] == expected, timeout=12
        )
        delay = time.monotonic() - burst_started
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # What was planted: the usual rate and the burst's rate up to the alert, as sent.
    usual_rate = len(usual) / 8
    burst_rate = sum(1 for at in burst if at <= burst_started + delay) / delay
    print(f"usual {usual_rate:.1f}/s, burst {burst_rate:.1f}/s; alert {delay:.1f}s into the burst")
    assert burst_rate >= 15 * usual_rate, "the test could not send the burst fast enough"
    assert not errors, errors
    assert delay < 10, f"the alert came {delay:.1f}s after the burst began"
    assert alert["baseline_rate"] is not None and 1.0 < alert["baseline_rate"] < 3.0
    assert (
        alert["observed_rate"] is not None and alert["observed_rate"] >= 10 * alert["baseline_rate"]
    )
    assert alert["endpoint"] is None and len(alert["exchange_ids"]) == 5
    # The alert is in the log (rate-limited) and in the metrics too.
    assert "ALERT warning client_rate" in stack.monitor.stderr
    assert (
        stack.metric('trafficmirror_monitor_alerts_total{kind="client_rate",severity="warning"}')
        >= 1
    )
    # Nothing about the demo's client by rate: only the planted ones raised anything.
    assert {a["kind"] for a in stack.alerts.seen} <= {
        "sql_injection",
        "client_rate",
        "endpoint_rate",
        "new_client_hammering",
    }


def test_the_monitor_stops_cleanly_and_says_what_it_did(stack: Stack) -> None:
    judged = int(stack.metric("trafficmirror_monitor_exchanges_total"))
    assert stack.monitor.stop() == 0
    line = next(li for li in stack.monitor.stderr.splitlines() if "monitor stopped:" in li)
    match = re.search(r"monitor stopped: (\d+) exchanges judged, (\d+) alerts raised", line)
    assert match is not None, line
    assert int(match[1]) >= judged > 200 and int(match[2]) >= 4, line
    assert "(0 not delivered), 0 records undecodable" in line, line
