"""HTTP/2 recorded through `trafficmirror record`, replayed by `replay range` to h2-only shadows.

A client speaks HTTP/2 to a real recorder process in front of an HTTP/1.1
production app: h2c with prior knowledge (several streams on one connection)
and HTTPS with ALPN h2 (trusting mitmproxy's CA), so the events say HTTP/2.0.
`replay range` (a process) then replays the topic:

* with the default `--http-version auto` to an h2c-only shadow, and to a
  TLS shadow that offers only h2 by ALPN: each shadow got every request over
  HTTP/2 (it cannot answer anything else) and the results are all matches;
* with `--http-version 1.1` to a second copy of the HTTP/1.1 app: every
  request arrives as HTTP/1.1, also all matches; and the same to the h2-only
  shadow gets no answer that matches (it refuses HTTP/1.1).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tests.e2e.test_pipeline import wait_until
from tests.h2server import H2Server, tls_server_context
from tests.replayer.events import watermarks
from tests.support import Kafka, Procs, free_port, run_cli, self_signed_cert, wait_port

pytestmark = pytest.mark.e2e

H2C_PATHS = [f"/h2c/items/{n}?q={n}" for n in range(6)]
TLS_PATHS = [f"/tls/items/{n}" for n in range(3)]


class _Production(BaseHTTPRequestHandler):
    """HTTP/1.1 only; answers like tests/h2server.py's default handler; notes the version."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook
        self.seen.append((self.request_version, self.path))
        body = json.dumps({"path": self.path, "method": "GET"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def h2_get(sock: socket.socket, scheme: str, authority: str, paths: list[str]) -> list[int]:
    """GET every path at once, each on a stream of one HTTP/2 connection; the statuses."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    for index, path in enumerate(paths):
        headers = [
            (":method", "GET"),
            (":path", path),
            (":scheme", scheme),
            (":authority", authority),
            ("accept", "application/json"),
        ]
        conn.send_headers(1 + 2 * index, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    statuses: dict[int, int] = {}
    ended: set[int] = set()
    while len(ended) < len(paths):
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before every response ended")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                statuses[event.stream_id] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        sock.sendall(conn.data_to_send())
    return [statuses[1 + 2 * i] for i in range(len(paths))]


@dataclass
class Recorded:
    topic: str
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def recorded(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    tmp = tmp_path_factory.mktemp("http2-replay")
    topic = kafka.new_topic(1, prefix="e2e-h2")
    procs = Procs(tmp)
    production = ThreadingHTTPServer(("127.0.0.1", 0), _Production)
    threading.Thread(target=production.serve_forever, daemon=True).start()
    app = f"http://127.0.0.1:{production.server_address[1]}"
    try:
        port = free_port()
        confdir = tmp / "mitmproxy"
        recorder = procs.start(
            "recorder",
            [
                "record",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
                "--upstream",
                app,
                "--listen",
                f"127.0.0.1:{port}",
                "--confdir",
                str(confdir),
            ],
        )
        wait_port(port, timeout=15)
        authority = f"127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert h2_get(sock, "http", authority, H2C_PATHS) == [200] * len(H2C_PATHS)
        context = ssl.create_default_context(cafile=str(confdir / "mitmproxy-ca-cert.pem"))
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            assert sock.selected_alpn_protocol() == "h2"
            assert h2_get(sock, "https", authority, TLS_PATHS) == [200] * len(TLS_PATHS)
        total = len(H2C_PATHS) + len(TLS_PATHS)
        wait_until(
            "events in Kafka",
            lambda: watermarks(kafka.bootstrap_servers, topic, 0)[1] >= total,
            30,
        )
        assert recorder.stop() == 0, procs.dump()
        assert f"recorded={total} dropped=0 failed=0" in recorder.stderr, recorder.stderr
        inspected = run_cli(
            ["inspect", "-b", kafka.bootstrap_servers, "-t", topic, "--format", "json"]
        )
        assert inspected.returncode == 0, inspected.stderr
        events = [json.loads(line) for line in inspected.stdout.splitlines()]
        assert {e["http_version"] for e in events} == {"HTTP/2.0"}
        assert {e["scheme"] for e in events} == {"http", "https"}
        cert, key = self_signed_cert(tmp)
        _Production.seen.clear()
        yield Recorded(topic, cert, key)
    except BaseException:
        print(procs.dump())
        raise
    finally:
        procs.close()
        production.shutdown()
        production.server_close()


def replay(
    kafka: Kafka, recorded: Recorded, target: str, *options: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    import os

    result = run_cli(
        [
            "replay",
            "range",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            recorded.topic,
            "--start-offset",
            "0",
            "--speed",
            "max",
            "--target",
            target,
            "--no-results",
            *options,
        ],
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


def recorded_paths() -> list[str]:
    return sorted(H2C_PATHS + TLS_PATHS)


def test_auto_replays_http2_exchanges_to_an_h2c_only_shadow(
    kafka: Kafka, recorded: Recorded
) -> None:
    shadow = H2Server().start_thread()
    try:
        code, out = replay(kafka, recorded, f"http://127.0.0.1:{shadow.port}")
    finally:
        shadow.stop_thread()
    assert code == 0, out
    assert sorted(s.path for s in shadow.seen) == recorded_paths()
    assert shadow.refused == 0
    assert shadow.connections == 1  # every stream on one connection
    assert f"match {len(recorded_paths())}" in out, out


def test_auto_negotiates_h2_by_alpn_with_a_tls_shadow(kafka: Kafka, recorded: Recorded) -> None:
    tls = tls_server_context(str(recorded.cert), str(recorded.key))
    shadow = H2Server(tls=tls).start_thread()
    try:
        code, out = replay(
            kafka,
            recorded,
            f"https://127.0.0.1:{shadow.port}",
            env={"SSL_CERT_FILE": str(recorded.cert)},
        )
    finally:
        shadow.stop_thread()
    assert code == 0, out
    assert sorted(s.path for s in shadow.seen) == recorded_paths()
    assert f"match {len(recorded_paths())}" in out, out


def test_http_version_1_1_forces_http1(kafka: Kafka, recorded: Recorded) -> None:
    _Production.seen.clear()
    http1_shadow = ThreadingHTTPServer(("127.0.0.1", 0), _Production)
    threading.Thread(target=http1_shadow.serve_forever, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{http1_shadow.server_address[1]}"
        code, out = replay(kafka, recorded, target, "--http-version", "1.1")
    finally:
        http1_shadow.shutdown()
        http1_shadow.server_close()
    assert code == 0, out
    assert sorted(_Production.seen) == [("HTTP/1.1", p) for p in recorded_paths()]
    assert f"match {len(recorded_paths())}" in out, out
    # The h2-only shadow cannot answer HTTP/1.1: nothing reaches it as a request.
    shadow = H2Server().start_thread()
    try:
        code, out = replay(
            kafka, recorded, f"http://127.0.0.1:{shadow.port}", "--http-version", "1.1"
        )
    finally:
        shadow.stop_thread()
    # Errors, or (when its 505 is read past the binary SETTINGS frame) mismatches: never a match.
    assert code in (0, 1), out
    assert "comparison: match 0 " in out, out
    assert shadow.seen == []
    assert shadow.refused >= 1


def test_without_http2_at_the_shadow_auto_falls_back_and_2_sends_nothing(
    kafka: Kafka, recorded: Recorded
) -> None:
    _Production.seen.clear()
    http1_shadow = ThreadingHTTPServer(("127.0.0.1", 0), _Production)
    threading.Thread(target=http1_shadow.serve_forever, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{http1_shadow.server_address[1]}"
        auto_code, auto_out = replay(kafka, recorded, target)
        auto_seen = sorted(_Production.seen)
        _Production.seen.clear()
        code, out = replay(kafka, recorded, target, "--http-version", "2", "--give-up-after", "2")
    finally:
        http1_shadow.shutdown()
        http1_shadow.server_close()
    # auto: the h2c preface found an HTTP/1.1 server; every request went as HTTP/1.1.
    assert auto_code == 0, auto_out
    assert auto_seen == [("HTTP/1.1", p) for p in recorded_paths()]
    assert "does not speak HTTP/2" in auto_out, auto_out
    assert f"match {len(recorded_paths())}" in auto_out, auto_out
    # 2: not sent, like an unreachable shadow: the guard holds the requests, then gives up.
    assert code == 1, out
    assert _Production.seen == []
    assert "HTTP/2 preface" in out, out
