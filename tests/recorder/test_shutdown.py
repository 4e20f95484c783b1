"""Stopping `record` (and `mitmdump -s recorder/addon.py`) under load, as real processes.

Fifty keep-alive clients send steadily through the recorder to a real app; a
SIGTERM arrives mid-load. Every request a client saw answered must be in the
topic, exactly once, and nothing else but the exchange the stop cut off; the
exit summary must balance (`seen = recorded + dropped + failed`), the
requests sent on open connections after the signal must still be answered
(marked `Connection: close`, which the event leaves out), and nothing may be
left for asyncio to destroy ("Task was destroyed but it is pending!").
"""

from __future__ import annotations

import asyncio
import http.client
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from recorder import addon as addon_module
from recorder.drain import STOPPED_ERROR
from tests.recorder.helpers import read_events
from tests.support import Kafka, Procs, free_port, wait_port
from trafficmirror.demo.apps import SampleApp

pytestmark = pytest.mark.e2e

MITMDUMP = Path(sys.executable).parent / "mitmdump"
CLIENTS = 50
#: Seconds between two requests of one client (50 clients: about 500 requests/s offered).
INTERVAL = 0.1
SUMMARY = re.compile(
    r"seen=(\d+) recorded=(\d+) dropped=(\d+) failed=(\d+) .* filtered=(\d+) cut_off=(\d+)"
)


class SlowApp(SampleApp):
    """The sample app; `/sleep/SECONDS` answers after that long."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdown_timeout = 0.5
        #: Paths of the /sleep/ requests that have arrived.
        self.sleeping: set[str] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.startswith("/sleep/"):
            self.sleeping.add(request.path)
            await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
        return self.respond(request, body)


@pytest.fixture
def app() -> Iterator[SlowApp]:
    with SlowApp() as server:
        yield server


@dataclass
class Client:
    """One keep-alive client's view: which of its requests were answered, and how."""

    index: int
    answered: list[str] = field(default_factory=list)
    closed_by_proxy: int = 0  # responses marked Connection: close
    refused: bool = False
    errors: list[str] = field(default_factory=list)


def steady_client(port: int, client: Client, until: float) -> None:
    """GET /load/<client>/<n> every INTERVAL on one connection until the proxy refuses us."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    next_at = time.monotonic()
    while time.monotonic() < until:
        path = f"/load/{client.index}/{n}"
        n += 1
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
        except ConnectionRefusedError:
            client.refused = True  # the recorder no longer accepts connections
            break
        except (OSError, http.client.HTTPException) as exc:
            client.errors.append(f"{path}: {type(exc).__name__}: {exc}")
            conn.close()
        else:
            if response.status == 200:
                client.answered.append(path)
            if (response.getheader("connection") or "").lower() == "close":
                client.closed_by_proxy += 1
        next_at += INTERVAL
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()


@dataclass
class Slow:
    """A single slow request and what became of it."""

    path: str
    status: int = 0
    error: str = ""


def slow_request(port: int, slow: Slow, go: threading.Event | None = None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=40)
    try:
        conn.connect()
        if go is not None:
            go.wait(30)
        conn.request("GET", slow.path)
        response = conn.getresponse()
        response.read()
        slow.status = response.status
    except (OSError, http.client.HTTPException) as exc:
        slow.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def topic_size(bootstrap: str, topic: str) -> int:
    """Messages in `topic` (sum of its partitions' high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def parse_summary(text: str) -> dict[str, int]:
    found = SUMMARY.findall(text)
    assert len(found) == 1, f"expected one summary line in:\n{text}"
    names = ("seen", "recorded", "dropped", "failed", "filtered", "cut_off")
    return dict(zip(names, (int(n) for n in found[0]), strict=True))


def load_then_signal(
    port: int, app: SlowApp, signal_process: Any, wait_exit: Any, lead: float = 1.0
) -> tuple[list[Client], Slow, Slow, float]:
    """50 steady clients plus a 1 s and a 30 s request; SIGTERM `lead` seconds into the load,
    while both slow requests are at the app."""
    clients = [Client(i) for i in range(CLIENTS)]
    until = time.monotonic() + 30
    threads = [
        threading.Thread(target=steady_client, args=(port, c, until), daemon=True) for c in clients
    ]
    short, long = Slow("/sleep/1"), Slow("/sleep/30")
    go = threading.Event()
    threads += [
        threading.Thread(target=slow_request, args=(port, s, go), daemon=True)
        for s in (short, long)
    ]
    for thread in threads:
        thread.start()
    # Mid-load: every client is through at least once (the first connections of
    # a freshly started proxy are slow on a loaded machine), then some more.
    ramp_up = time.monotonic() + 15
    while not all(c.answered for c in clients) and time.monotonic() < ramp_up:
        time.sleep(0.05)
    time.sleep(lead)
    go.set()
    at_app = time.monotonic() + 10
    while app.sleeping != {short.path, long.path} and time.monotonic() < at_app:
        time.sleep(0.01)
    signalled = time.monotonic()
    signal_process()
    code = wait_exit()
    stopped = time.monotonic() - signalled
    for thread in threads:
        thread.join(15)
    assert code == 0
    return clients, short, long, stopped


def check_topic_and_summary(
    kafka: Kafka,
    topic: str,
    log: str,
    clients: list[Client],
    short: Slow,
    long: Slow,
    stopped: float,
) -> None:
    assert "Task was destroyed" not in log, log
    assert "Traceback" not in log, log
    counts = parse_summary(log)
    assert counts["seen"] == counts["recorded"] + counts["dropped"] + counts["failed"], counts
    assert counts["dropped"] == counts["failed"] == counts["filtered"] == 0, counts
    assert counts["cut_off"] == 1, counts

    answered = [path for c in clients for path in c.answered]
    # More than one request per client, even on a busy shared machine.
    assert len(answered) == len(set(answered)) > CLIENTS
    # The slow request the drain waited for was answered; the one longer than the
    # drain timeout was not (its connection closed at the deadline).
    assert short.status == 200, short
    assert long.status == 0 and long.error, long
    expected = len(answered) + 2  # + the short one and the cut-off one
    assert counts["recorded"] == expected == counts["seen"]
    assert topic_size(kafka.bootstrap_servers, topic) == expected

    events = read_events(kafka.bootstrap_servers, topic, expected)
    by_path = {event["path"].decode(): event for _, event in events}
    assert len(by_path) == len(events) == expected
    # Every answered request is there, answered; the only event with an error
    # is the exchange the stop cut off.
    for path in [*answered, short.path]:
        event = by_path.pop(path)
        assert event["error"] is None and event["response"]["status"] == 200, event
        # The Connection: close the drain added is not the app's: not in the event.
        assert b"connection" not in [h.lower() for h in event["response"]["message"]["headers"]]
    [cut_off] = by_path.values()
    assert cut_off["path"] == long.path.encode()
    assert cut_off["error"] == STOPPED_ERROR
    assert cut_off["response"] is None
    # The figures docs/reliability.md quotes (`pytest -s` shows them).
    print(
        f"\n{len(answered)} load requests answered ({sum(c.closed_by_proxy for c in clients)} "
        f"after the signal, marked Connection: close), {sum(len(c.errors) for c in clients)} "
        f"failed, {sum(c.refused for c in clients)} clients refused afterwards; exit "
        f"{stopped:.2f} s after SIGTERM; {counts}; topic {expected}"
    )


def test_sigterm_under_load_records_every_answered_request(
    kafka: Kafka, procs: Procs, app: SlowApp
) -> None:
    topic = kafka.new_topic(4)
    port = free_port()
    recorder = procs.start(
        "recorder",
        [
            "record",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--upstream",
            app.url,
            "--listen",
            f"127.0.0.1:{port}",
            "--drain-timeout",
            "3",
        ],
    )
    wait_port(port, timeout=15)
    clients, short, long, stopped = load_then_signal(
        port, app, lambda: recorder.signal(signal.SIGTERM), lambda: recorder.wait(30)
    )
    # The drain ran to its deadline (the 30 s request), not longer.
    assert 3.0 <= stopped < 12, stopped
    # After the signal, each client's next request on its open connection was
    # answered, marked Connection: close; then the listener refused it.
    # (Nearly all: a client starved of CPU for IDLE_GRACE on a loaded machine finds
    # its idle connection closed, and its request, never received, fails.)
    assert sum(c.closed_by_proxy for c in clients) >= CLIENTS * 0.8
    assert sum(c.refused for c in clients) >= CLIENTS * 0.8
    errors = [e for c in clients for e in c.errors]
    assert len(errors) <= CLIENTS * 0.1, errors
    log = recorder.stderr
    check_topic_and_summary(kafka, topic, log, clients, short, long, stopped)
    assert "drained in" in log and "1 unfinished at the end" in log


def test_a_second_signal_stops_at_once(kafka: Kafka, procs: Procs, app: SlowApp) -> None:
    topic = kafka.new_topic(1)
    port = free_port()
    recorder = procs.start(
        "recorder",
        [
            "record",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--upstream",
            app.url,
            "--listen",
            f"127.0.0.1:{port}",
            "--drain-timeout",
            "60",
        ],
    )
    wait_port(port, timeout=15)
    slow = Slow("/sleep/30")
    thread = threading.Thread(target=slow_request, args=(port, slow), daemon=True)
    thread.start()
    time.sleep(0.5)
    recorder.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert recorder.popen.poll() is None  # draining: it waits for the slow exchange
    signalled = time.monotonic()
    recorder.signal(signal.SIGINT)
    assert recorder.wait(20) == 0
    assert time.monotonic() - signalled < 5
    thread.join(10)
    assert slow.status == 0 and slow.error
    log = recorder.stderr
    assert "Task was destroyed" not in log and "Traceback" not in log, log
    assert "cut short by a second signal" in log
    counts = parse_summary(log)
    assert counts["seen"] == counts["recorded"] == counts["cut_off"] == 1, counts
    [(_, event)] = read_events(kafka.bootstrap_servers, topic, 1)
    assert event["path"] == b"/sleep/30" and event["error"] == STOPPED_ERROR


def test_mitmdump_with_the_addon_drains_too(kafka: Kafka, app: SlowApp, tmp_path: Path) -> None:
    assert MITMDUMP.exists(), MITMDUMP
    topic = kafka.new_topic(4)
    port = free_port()
    log_path = tmp_path / "mitmdump.log"
    with open(log_path, "wb") as out:
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
                "trafficmirror_drain_timeout=3",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_port(port, timeout=15)
        clients, short, long, stopped = load_then_signal(
            port, app, lambda: proc.send_signal(signal.SIGTERM), lambda: proc.wait(30)
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert 3.0 <= stopped < 12, stopped
    log = log_path.read_text(errors="replace")
    check_topic_and_summary(kafka, topic, log, clients, short, long, stopped)


class H2Client:
    """One HTTP/2 connection over TLS that sends one GET at a time (the h2 package)."""

    def __init__(self, port: int, cafile: Path) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        context.set_alpn_protocols(["h2"])
        self.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
        )
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str) -> int:
        """The status, or 0 if the connection closed first."""
        stream = self.conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "a")]
        self.conn.send_headers(stream, headers, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status = 0
        while True:
            data = self.sock.recv(65536)
            if not data:
                return 0
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return status
            self.sock.sendall(self.conn.data_to_send())


def test_http2_clients_are_answered_until_the_deadline(
    kafka: Kafka, procs: Procs, app: SlowApp, tmp_path: Path
) -> None:
    # mitmproxy has no graceful GOAWAY: an HTTP/2 client that keeps its
    # connection busy is answered through the drain, then the connection closes.
    topic = kafka.new_topic(1)
    port = free_port()
    confdir = tmp_path / "mitmproxy"
    recorder = procs.start(
        "recorder",
        [
            "record",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--upstream",
            app.url,
            "--listen",
            f"127.0.0.1:{port}",
            "--confdir",
            str(confdir),
            "--drain-timeout",
            "2",
        ],
    )
    wait_port(port, timeout=15)
    client = H2Client(port, confdir / "mitmproxy-ca-cert.pem")
    answered: list[str] = []
    after_signal = 0
    signalled = 0.0
    for n in range(200):
        if n == 5:
            recorder.signal(signal.SIGTERM)
            signalled = time.monotonic()
        path = f"/h2/{n}"
        try:
            status = client.get(path)
        except OSError:
            status = 0
        if status == 0:
            break
        assert status == 200
        answered.append(path)
        after_signal += bool(signalled)
        time.sleep(0.1)
    closed_after = time.monotonic() - signalled
    client.sock.close()
    assert recorder.wait(20) == 0
    # Answered through the drain (about 2 s of requests every 0.1 s), then closed.
    assert after_signal >= 5, answered
    assert 1.5 <= closed_after < 6, closed_after
    log = recorder.stderr
    assert "Task was destroyed" not in log and "Traceback" not in log, log
    counts = parse_summary(log)
    assert counts["seen"] == counts["recorded"] + counts["dropped"] + counts["failed"], counts
    # Each answered request is recorded; a request sent as the connection closed
    # at the deadline was either never received (not seen) or recorded cut off.
    assert counts["recorded"] == len(answered) + counts["cut_off"], counts
    events = read_events(kafka.bootstrap_servers, topic, counts["recorded"])
    got = {e["path"].decode(): e for _, e in events}
    assert all(got[path]["response"]["status"] == 200 for path in answered)
    assert all(e["http_version"] == "HTTP/2.0" for e in got.values())
    print(
        f"\nHTTP/2: {after_signal} answered after SIGTERM, closed {closed_after:.2f} s in; {counts}"
    )
