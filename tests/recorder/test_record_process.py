"""`trafficmirror record` and `mitmdump -s recorder/addon.py` as real processes.

A real HTTP client talks through the recorder to a real app; the events are
read back from the broker and compared with what was sent and answered. The
broker-unreachable test checks that live traffic does not notice Kafka being
away and that the exit summary accounts for every exchange.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recorder import addon as addon_module
from tests.recorder.helpers import read_events
from tests.support import Kafka, Proc, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import RecordingShadow

pytestmark = pytest.mark.e2e

MITMDUMP = Path(sys.executable).parent / "mitmdump"
SUMMARY = re.compile(r"recorded=(\d+) dropped=(\d+) failed=(\d+)")


@dataclass
class Sent:
    """One request as the client sent it, and what it got back."""

    seq: int
    conn: int
    local_port: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    status: int = 0
    response_body: bytes = b""
    elapsed: float = 0.0
    flat: list[bytes] = field(default_factory=list)


def request(
    conn: http.client.HTTPConnection,
    number: int,
    seq: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
) -> Sent:
    """Send exactly these header lines (no Host or Accept-Encoding added by http.client)."""
    all_headers = [("Host", "shop.example.com"), ("X-Seq", str(seq)), *headers]
    if body:
        all_headers.append(("Content-Length", str(len(body))))
    started = time.perf_counter()
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in all_headers:
        conn.putheader(name, value)
    conn.endheaders(body or None)
    assert conn.sock is not None
    local_port = conn.sock.getsockname()[1]
    response = conn.getresponse()
    payload = response.read()
    return Sent(
        seq=seq,
        conn=number,
        local_port=local_port,
        method=method,
        path=path,
        headers=all_headers,
        body=body,
        status=response.status,
        response_body=payload,
        elapsed=time.perf_counter() - started,
        flat=[part.encode("latin-1") for pair in all_headers for part in pair],
    )


def start_record(
    procs: Procs, name: str, bootstrap: str, topic: str, upstream: str, *extra: str
) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        name,
        [
            "record",
            "-b",
            bootstrap,
            "-t",
            topic,
            "--upstream",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
            *extra,
        ],
    )
    try:
        wait_port(port, timeout=15)
    except TimeoutError:
        proc.stop()
        raise AssertionError(f"recorder did not start:\n{proc.stderr}") from None
    return proc, port


def summary(text: str) -> tuple[int, int, int]:
    found = SUMMARY.findall(text)
    assert len(found) == 1, f"expected one summary line in:\n{text}"
    recorded, dropped, failed = (int(n) for n in found[0])
    return recorded, dropped, failed


@pytest.fixture
def app() -> Iterator[RecordingShadow]:
    """The live app: answers like the sample app and keeps every request it received."""
    with RecordingShadow() as server:
        yield server


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http only)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def test_record_writes_every_exchange_as_sent(
    kafka: Kafka, procs: Procs, app: RecordingShadow
) -> None:
    topic = kafka.new_topic(4)
    metrics_port = free_port()
    recorder, port = start_record(
        procs,
        "recorder",
        kafka.bootstrap_servers,
        topic,
        app.url,
        "--max-body-bytes",
        "65536",
        "--metrics-port",
        str(metrics_port),
    )
    upload = os.urandom(200_000)
    order = json.dumps({"sku": "SKU-1", "qty": 2, "note": "\u2713"}).encode()
    a = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    b = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = [
        request(
            a,
            0,
            0,
            "GET",
            "/search?q=caf%C3%A9&tag=a&tag=b",
            [("X-Dup", "1"), ("Accept", "application/json"), ("x-dup", "2"), ("X-DUP", "3")],
        ),
        request(a, 0, 1, "POST", "/api/orders", [("Content-Type", "application/json")], order),
        request(a, 0, 2, "PUT", "/upload", [("Content-Type", "application/octet-stream")], upload),
        request(b, 1, 3, "GET", "/bytes/100000", []),
        request(b, 1, 4, "GET", "/status/500", [("User-Agent", "tm-test/1")]),
    ]
    a.close()
    b.close()
    assert [s.status for s in sent] == [200, 200, 200, 200, 500]

    # The app got each request exactly as the client sent it, Host included.
    received = {int(r.header("X-Seq") or -1): r for r in app.wait_for(len(sent))}
    for s in sent:
        got = received[s.seq]
        assert (got.method, got.path, got.body) == (s.method, s.path, s.body)
        assert [(k.decode(), v.decode()) for k, v in got.headers] == s.headers

    deadline = time.monotonic() + 10
    while http_get(f"http://127.0.0.1:{metrics_port}/readyz")[0] != 200:
        assert time.monotonic() < deadline, "recorder never became ready"
        time.sleep(0.1)
    status, metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200 and "trafficmirror_recorder_recorded_total" in metrics

    assert recorder.stop() == 0
    assert summary(recorder.stderr) == (5, 0, 0)
    assert "Traceback" not in recorder.stderr

    events = read_events(kafka.bootstrap_servers, topic, len(sent))
    assert len(events) == len(sent)
    by_seq: dict[int, tuple[Any, dict[str, Any]]] = {}
    for msg, event in events:
        headers = event["request"]["headers"]
        by_seq[int(headers[headers.index(b"X-Seq") + 1])] = (msg, event)
    for s in sent:
        msg, event = by_seq[s.seq]
        req, resp = event["request"], event["response"]
        assert event["method"] == s.method
        assert event["path"] == s.path.encode()
        assert event["authority"] == "shop.example.com"
        assert (event["scheme"], event["http_version"]) == ("http", "HTTP/1.1")
        assert req["headers"] == s.flat
        assert req["body_length"] == len(s.body)
        assert req["body"] == s.body[:65536]
        assert req["body_truncated"] is (len(s.body) > 65536)
        assert resp["status"] == s.status
        assert resp["message"]["body_length"] == len(s.response_body)
        assert resp["message"]["body"] == s.response_body[:65536]
        assert resp["message"]["body_truncated"] is (len(s.response_body) > 65536)
        assert event["error"] is None
        assert event["client"] == {"host": "127.0.0.1", "port": s.local_port}
        assert event["server"] == {"host": "127.0.0.1", "port": app.port}
        assert event["recorder"]["recorder_id"] == f"{socket.gethostname()}:{port}"
        times = [event[k] for k in ("request_start_us", "request_end_us")]
        times += [event[k] for k in ("response_start_us", "response_end_us")]
        assert times == sorted(times) and None not in times
        assert msg.timestamp()[1] == event["request_start_us"] // 1000
        assert dict(msg.headers())["content-type"].startswith(b"application/avro")
    # One key per client connection; a connection's exchanges stay in one
    # partition, in the order they happened.
    keys = {conn: {by_seq[s.seq][0].key() for s in sent if s.conn == conn} for conn in (0, 1)}
    assert len(keys[0]) == len(keys[1]) == 1 and keys[0] != keys[1]
    for conn in (0, 1):
        msgs = [by_seq[s.seq][0] for s in sent if s.conn == conn]
        assert len({m.partition() for m in msgs}) == 1
        assert [m.offset() for m in msgs] == sorted(m.offset() for m in msgs)


def test_upstream_error_is_recorded(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(1)
    recorder, port = start_record(
        procs, "recorder", kafka.bootstrap_servers, topic, f"http://127.0.0.1:{free_port()}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = request(conn, 0, 0, "GET", "/down", [])
    conn.close()
    assert sent.status == 502
    assert recorder.stop() == 0
    assert summary(recorder.stderr) == (1, 0, 0)
    [(_, event)] = read_events(kafka.bootstrap_servers, topic, 1)
    assert event["response"] is None
    assert event["error"]
    assert event["path"] == b"/down"


def test_live_traffic_unaffected_while_broker_is_unreachable(
    procs: Procs, app: RecordingShadow
) -> None:
    requests = 60
    recorder, port = start_record(
        procs,
        "recorder",
        f"127.0.0.1:{free_port()}",  # nothing listens there
        "traffic",
        app.url,
        "--flush-timeout",
        "1",
    )
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(3)]
    sent = [
        request(conns[i % 3], i % 3, i, "POST", f"/orders/{i}", [], b'{"n": %d}' % i)
        for i in range(requests)
    ]
    for conn in conns:
        conn.close()
    assert all(s.status == 200 for s in sent)
    assert len(app.received) == requests
    latencies = sorted(s.elapsed for s in sent)
    # Generous bounds for a loaded CI machine; a recorder that waited for the
    # broker would take seconds per request here.
    assert statistics.median(latencies) < 0.1, latencies
    assert latencies[-1] < 1.0, latencies

    started = time.monotonic()
    assert recorder.stop() == 0
    assert time.monotonic() - started < 8
    recorded, dropped, failed = summary(recorder.stderr)
    assert recorded == 0 and failed == 0
    assert recorded + dropped == requests
    assert "Traceback" not in recorder.stderr


def test_mitmdump_with_the_addon_script(kafka: Kafka, app: RecordingShadow, tmp_path: Path) -> None:
    assert MITMDUMP.exists(), MITMDUMP
    topic = kafka.new_topic(2)
    port = free_port()
    log = tmp_path / "mitmdump.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(MITMDUMP),
                "-s",
                addon_module.__file__,
                "--mode",
                f"reverse:{app.url}@127.0.0.1:{port}",
                "--set",
                "keep_host_header=true",
                "--set",
                "flow_detail=0",
                "--set",
                f"trafficmirror_bootstrap_servers={kafka.bootstrap_servers}",
                "--set",
                f"trafficmirror_topic={topic}",
                "--set",
                "trafficmirror_recorder_id=mitmdump-test",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_port(port, timeout=15)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sent = [
            request(conn, 0, i, "GET", f"/item/{i}?x=1", [("X-Dup", "a"), ("X-Dup", "b")])
            for i in range(3)
        ]
        conn.close()
        assert [s.status for s in sent] == [200, 200, 200]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    output = log.read_text(errors="replace")
    assert summary(output) == (3, 0, 0), output
    events = read_events(kafka.bootstrap_servers, topic, 3)
    assert sorted(e["path"] for _, e in events) == [f"/item/{i}?x=1".encode() for i in range(3)]
    for (_, event), s in zip(sorted(events, key=lambda m: m[1]["path"]), sent, strict=True):
        assert event["authority"] == "shop.example.com"
        assert event["request"]["headers"] == s.flat
        assert event["recorder"] == {
            "recorder_id": "mitmdump-test",
            "sampling_rate": 1.0,
            "redactions": [],
            "capture": "proxy",
        }


def test_port_in_use_is_one_line(kafka: Kafka) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            [
                "record",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                "t",
                "--upstream",
                "http://127.0.0.1:9",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            timeout=30,
        )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"trafficmirror: error: cannot listen on 127.0.0.1:{port}")
    )
    assert "Traceback" not in result.stderr


def test_bad_kafka_property_is_one_line(kafka: Kafka) -> None:
    result = run_cli(
        [
            "record",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            "t",
            "-X",
            "no.such.property=1",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trafficmirror: error:") and "no.such.property" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_port_in_use_is_one_line_before_anything_starts(kafka: Kafka, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            [
                "record",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                "t",
                "--upstream",
                "http://127.0.0.1:9",
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--metrics-port",
                str(port),
                "--workers",
                workers,
            ],
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"trafficmirror: error: cannot serve metrics on 127.0.0.1:{port}: {os.strerror(98)}"
    ]
