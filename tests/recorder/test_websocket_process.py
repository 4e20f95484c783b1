"""WebSocket sessions through `trafficmirror record` as a real process.

A real `websockets` echo server is the app; a real `websockets` client holds a
chat-like session through the recorder (text and binary messages both ways,
with gaps), and the events are read back from the broker: the 101 upgrade
first, then every message in order, then the end, all under one key.
"""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from recorder import addon as addon_module
from tests.recorder.helpers import read_events
from tests.recorder.test_record_process import MITMDUMP, start_record
from tests.support import Kafka, Procs, free_port, wait_port

pytestmark = pytest.mark.e2e

#: Seconds within which an echo must come back (the session's gaps are 0.2-0.5 s).
ECHO_TIMEOUT = 5.0


@dataclass
class Step:
    """One message the client sent, when, and the echo it got."""

    data: str | bytes
    sent_at: float
    echo: str | bytes


class EchoApp:
    """The live app: a `websockets` server answering each message with `echo:` + message."""

    def __init__(self) -> None:
        self.server: Server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closes: list[int | None] = []
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, conn: ServerConnection) -> None:
        try:
            for message in conn:
                if isinstance(message, str):
                    conn.send("echo:" + message)
                else:
                    conn.send(b"echo:" + message)
        except ConnectionClosed:
            pass
        self.closes.append(conn.close_code)

    def close(self) -> None:
        self.server.shutdown()
        self._thread.join(10)


@pytest.fixture
def echo_app() -> Iterator[EchoApp]:
    app = EchoApp()
    try:
        yield app
    finally:
        app.close()


def chat(ws: ClientConnection, messages: list[str | bytes], gaps: list[float]) -> list[Step]:
    """Send each message, wait for its echo (nothing may be held back), then pause."""
    steps = []
    for data, gap in zip(messages, gaps, strict=True):
        sent_at = time.time()
        ws.send(data)
        echo = ws.recv(timeout=ECHO_TIMEOUT)
        steps.append(Step(data, sent_at, echo))
        time.sleep(gap)
    return steps


def ordered(events: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    return sorted(events, key=lambda pair: (pair[0].partition(), pair[0].offset()))


def test_ws_record_chat_session_in_order(kafka: Kafka, procs: Procs, echo_app: EchoApp) -> None:
    topic = kafka.new_topic(4)
    recorder, port = start_record(
        procs,
        "ws-recorder",
        kafka.bootstrap_servers,
        topic,
        echo_app.url,
        "--max-body-bytes",
        "1024",
    )
    big = bytes(range(256)) * 20  # 5120 bytes: over the cap
    messages: list[str | bytes] = ["hello", b"\x00\x01binary\xff", '{"say": "hi"}', big, "bye"]
    gaps = [0.2, 0.5, 0.3, 0.2, 0.0]
    with connect(f"ws://127.0.0.1:{port}/chat?room=1", max_size=None) as ws:
        steps = chat(ws, messages, gaps)
    # The client saw every echo whole, each before it sent the next message.
    for step in steps:
        expected = "echo:" + step.data if isinstance(step.data, str) else b"echo:" + step.data
        assert step.echo == expected

    deadline = time.monotonic() + 10
    while not echo_app.closes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.stop() == 0
    summary = recorder.stderr
    assert re.search(r"seen=1 recorded=12 dropped=0 failed=0", summary), summary
    assert "ws_messages=10 ws_ends=1 ws_messages_not_recorded=0" in summary

    events = ordered(read_events(kafka.bootstrap_servers, topic, 12))
    assert len(events) == 12
    keys = {msg.key() for msg, _ in events}
    partitions = {msg.partition() for msg, _ in events}
    assert len(keys) == 1 and len(partitions) == 1

    upgrade = events[0][1]
    assert upgrade["kind"] == "http" and upgrade["websocket"] is None
    assert upgrade["response"]["status"] == 101
    assert upgrade["path"] == b"/chat?room=1"

    records = [event for _, event in events[1:]]
    assert [e["kind"] for e in records] == ["websocket_message"] * 10 + ["websocket_end"]
    # Client message, then the server's echo, for each step.
    want: list[tuple[bool, bool, bytes, int]] = []
    for step in steps:
        for from_client, data in ((True, step.data), (False, step.echo)):
            raw = data.encode() if isinstance(data, str) else data
            want.append((from_client, isinstance(data, str), raw, len(raw)))
    got = []
    for index, event in enumerate(records[:10]):
        ws = event["websocket"]
        assert ws["upgrade_id"] == upgrade["id"]
        assert ws["index"] == index
        assert event["id"] == f"{upgrade['id']}/{index}"
        assert (event["method"], event["path"], event["authority"]) == (
            upgrade["method"],
            upgrade["path"],
            upgrade["authority"],
        )
        assert event["client"] == upgrade["client"] and event["response"] is None
        assert event["request"]["body"] == b"" and event["request"]["headers"] == []
        got.append((ws["from_client"], ws["text"], ws["payload"], ws["payload_length"]))
        full = want[index][2]
        assert ws["payload_truncated"] == (len(full) > 1024)
    for (from_client, is_text, raw, length), (g_from, g_text, g_payload, g_length) in zip(
        want, got, strict=True
    ):
        assert (g_from, g_text, g_length) == (from_client, is_text, length)
        assert g_payload == raw[:1024]

    # Timestamps: in order, at or after the upgrade, and each client message
    # recorded when it was sent (the recorder is on loopback: well within 1 s).
    stamps = [e["request_start_us"] for e in records]
    assert stamps == sorted(stamps)
    assert stamps[0] >= upgrade["request_start_us"]
    for step, event in zip(steps, records[0:10:2], strict=True):
        assert abs(event["request_start_us"] / 1e6 - step.sent_at) < 1.0
    # The recorded gaps between client messages are the session's: the client
    # sent the next one at least `gap` after the echo, which came after the
    # recorder had the message, so no recorded gap can be shorter than its
    # pause; and none is much longer than the client's own (loaded-box margin).
    client_stamps = [e["request_start_us"] / 1e6 for e in records[0:10:2]]
    for i in range(len(steps) - 1):
        sent_gap = steps[i + 1].sent_at - steps[i].sent_at
        recorded_gap = client_stamps[i + 1] - client_stamps[i]
        assert gaps[i] - 0.01 <= recorded_gap <= sent_gap + 1.0

    end = records[10]
    assert end["websocket"]["index"] == 10
    assert end["websocket"]["from_client"] is True
    assert end["websocket"]["close_code"] == 1000
    assert end["websocket"]["messages_not_recorded"] == 0
    assert end["error"] is None
    assert end["id"] == f"{upgrade['id']}/end"


def test_ws_record_sigterm_mid_session_records_end(
    kafka: Kafka, procs: Procs, echo_app: EchoApp
) -> None:
    topic = kafka.new_topic(2)
    recorder, port = start_record(
        procs, "ws-stop", kafka.bootstrap_servers, topic, echo_app.url, "--drain-timeout", "5"
    )
    with connect(f"ws://127.0.0.1:{port}/live") as ws:
        chat(ws, ["one", "two"], [0.2, 0.2])
        signalled = time.monotonic()
        recorder.signal(signal.SIGTERM)
        # The recorder closes the connection, going away, well within the drain timeout.
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        closed_after = time.monotonic() - signalled
        client_close = ws.close_code
    assert recorder.wait(30) == 0
    assert closed_after < 5.0
    assert client_close == 1001
    summary = recorder.stderr
    assert "ws_messages=4 ws_ends=1 ws_messages_not_recorded=0" in summary, summary

    events = ordered(read_events(kafka.bootstrap_servers, topic, 6))
    kinds = [event["kind"] for _, event in events]
    assert kinds == ["http"] + ["websocket_message"] * 4 + ["websocket_end"]
    end = events[-1][1]["websocket"]
    assert end["close_code"] == 1001 and end["index"] == 4
    assert end["from_client"] is False
    assert events[-1][1]["error"] is not None and "1001" in events[-1][1]["error"]
    # The app was told too.
    deadline = time.monotonic() + 10
    while not echo_app.closes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echo_app.closes == [1001]


def rss_bytes(pid: int) -> int:
    """The resident set size of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_ws_record_long_session_does_not_grow_memory(
    kafka: Kafka, procs: Procs, echo_app: EchoApp
) -> None:
    # 1500 round trips of 16 KiB each way after the warm-up: ~48 MiB that
    # mitmproxy would keep in flow.websocket.messages if the recorder did not
    # drop them; recorded, each message costs the 1 KiB payload it keeps until
    # Kafka has it.
    topic = kafka.new_topic(1)
    recorder, port = start_record(
        procs, "ws-long", kafka.bootstrap_servers, topic, echo_app.url, "--max-body-bytes", "1024"
    )
    payload = b"z" * 16384
    with connect(f"ws://127.0.0.1:{port}/long", max_size=None) as ws:
        for _ in range(300):
            ws.send(payload)
            ws.recv(timeout=ECHO_TIMEOUT)
        before = rss_bytes(recorder.popen.pid)
        for _ in range(1500):
            ws.send(payload)
            ws.recv(timeout=ECHO_TIMEOUT)
        after = rss_bytes(recorder.popen.pid)
    assert recorder.stop() == 0
    assert "ws_messages=3600 ws_ends=1 ws_messages_not_recorded=0" in recorder.stderr
    grown = after - before
    assert grown < 16 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB over 1500 round trips"


def test_ws_record_session_over_tls(
    kafka: Kafka, procs: Procs, echo_app: EchoApp, tmp_path: Path
) -> None:
    topic = kafka.new_topic(1)
    confdir = tmp_path / "mitmproxy"
    recorder, port = start_record(
        procs, "ws-tls", kafka.bootstrap_servers, topic, echo_app.url, "--confdir", str(confdir)
    )
    context = ssl.create_default_context(cafile=str(confdir / "mitmproxy-ca-cert.pem"))
    with connect(f"wss://127.0.0.1:{port}/secure", ssl=context) as ws:
        steps = chat(ws, ["over tls", b"\x01\x02"], [0.2, 0.0])
    assert [step.echo for step in steps] == ["echo:over tls", b"echo:\x01\x02"]
    deadline = time.monotonic() + 10
    while not echo_app.closes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.stop() == 0
    events = [event for _, event in ordered(read_events(kafka.bootstrap_servers, topic, 6))]
    assert [e["kind"] for e in events] == ["http"] + ["websocket_message"] * 4 + ["websocket_end"]
    assert {e["scheme"] for e in events} == {"https"}
    assert [e["websocket"]["payload"] for e in events[1:5]] == [
        b"over tls",
        b"echo:over tls",
        b"\x01\x02",
        b"echo:\x01\x02",
    ]


def test_ws_mitmdump_script_records_session_and_stop(
    kafka: Kafka, echo_app: EchoApp, tmp_path: Path
) -> None:
    topic = kafka.new_topic(1)
    port = free_port()
    log = tmp_path / "mitmdump.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(MITMDUMP),
                "-s",
                addon_module.__file__,
                "--mode",
                f"reverse:{echo_app.url}@127.0.0.1:{port}",
                "--set",
                "keep_host_header=true",
                "--set",
                "flow_detail=0",
                "--set",
                f"trafficmirror_bootstrap_servers={kafka.bootstrap_servers}",
                "--set",
                f"trafficmirror_topic={topic}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_port(port, timeout=15)
        with connect(f"ws://127.0.0.1:{port}/dump") as ws:
            chat(ws, ["a", b"b"], [0.2, 0.2])
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=10)
            client_close = ws.close_code
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    output = log.read_text(errors="replace")
    assert client_close == 1001, output
    assert "ws_messages=4 ws_ends=1 ws_messages_not_recorded=0" in output, output
    events = [event for _, event in ordered(read_events(kafka.bootstrap_servers, topic, 6))]
    assert [e["kind"] for e in events] == ["http"] + ["websocket_message"] * 4 + ["websocket_end"]
    assert events[-1]["websocket"]["close_code"] == 1001


def test_ws_record_filtered_session_records_nothing_and_is_closed_at_stop(
    kafka: Kafka, procs: Procs, echo_app: EchoApp
) -> None:
    topic = kafka.new_topic(1)
    recorder, port = start_record(
        procs, "ws-filtered", kafka.bootstrap_servers, topic, echo_app.url, "--filter", "~u /kept"
    )
    with connect(f"ws://127.0.0.1:{port}/skipped") as ws:
        chat(ws, ["not", "recorded"], [0.2, 0.2])
        recorder.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        client_close = ws.close_code
    assert recorder.wait(30) == 0
    assert client_close == 1001
    assert re.search(r"seen=0 recorded=0 dropped=0 failed=0 .*filtered=1", recorder.stderr)
    assert "ws_messages" not in recorder.stderr
    assert read_events(kafka.bootstrap_servers, topic, 1, timeout=3) == []
