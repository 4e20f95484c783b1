"""Huge and odd traffic through `trafficmirror record`: recorded faithfully or flagged.

One recorder process (body cap 64 KiB, mitmproxy's CA in a temporary confdir)
in front of a real app, and clients that send what production sends now and
then: bodies far over the cap both ways, a chunked upload, header values that
are not UTF-8 (Latin-1 bytes), HTTPS with HTTP/1.1 and HTTP/2 (httpx, h2). For
each: the live exchange is intact, and the event holds the exact bytes, or is
flagged truncated with the original length. `inspect` then prints every event.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.recorder.helpers import read_events
from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import RecordingShadow

pytestmark = pytest.mark.e2e

CAP = 65536


def pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are; return the whole response (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def tls_request(
    port: int, cafile: Path, path: str, body: bytes = b"", http2: bool = False
) -> tuple[str, int, bytes]:
    """(protocol, status, body) of one HTTPS request; HTTP/2 through the h2 package."""
    context = ssl.create_default_context(cafile=str(cafile))
    method = "POST" if body else "GET"
    if not http2:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        conn.request(method, path, body=body or None)
        response = conn.getresponse()
        result = ("HTTP/1.1", response.status, response.read())
        conn.close()
        return result
    # Offer h2 first: mitmproxy follows the client's order of preference.
    context.set_alpn_protocols(["h2", "http/1.1"])
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1"
    ) as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn2.initiate_connection()
        headers = [
            (":method", method),
            (":path", path),
            (":scheme", "https"),
            (":authority", f"127.0.0.1:{port}"),
        ]
        conn2.send_headers(1, headers, end_stream=not body)
        status, received, pending, ended = 0, bytearray(), memoryview(body), not body
        while True:
            while not ended:
                size = min(conn2.local_flow_control_window(1), conn2.max_outbound_frame_size)
                if size <= 0:
                    break
                conn2.send_data(1, pending[:size].tobytes(), end_stream=len(pending) <= size)
                pending = pending[size:]
                ended = not pending
            sock.sendall(conn2.data_to_send())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the response ended")
            for event in conn2.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    received += event.data
                    conn2.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return "HTTP/2", status, bytes(received)


@pytest.fixture
def app() -> Iterator[RecordingShadow]:
    with RecordingShadow() as server:
        yield server


def test_huge_chunked_latin1_https_and_http2(
    kafka: Kafka, procs: Procs, app: RecordingShadow, tmp_path: Path
) -> None:
    topic = kafka.new_topic(2)
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
            "--max-body-bytes",
            str(CAP),
            "--confdir",
            str(confdir),
        ],
    )
    wait_port(port, timeout=15)
    live: dict[str, Any] = {}

    # 1. Bodies far over the cap, both ways.
    upload = os.urandom(5 * 1024 * 1024)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("PUT", "/huge-upload", body=upload)
    response = conn.getresponse()
    live["upload"] = (response.status, json.loads(response.read()))
    conn.request("GET", "/bytes/3000000")
    response = conn.getresponse()
    live["download"] = (response.status, response.read())

    # 2. A chunked upload (Transfer-Encoding: chunked from the client).
    parts = [bytes([65 + i]) * 5000 for i in range(10)]
    conn.request("POST", "/chunked", body=iter(parts), encode_chunked=True)
    response = conn.getresponse()
    live["chunked"] = (response.status, json.loads(response.read()))
    conn.close()

    # 3. Header values that are not UTF-8.
    answer = raw_request(
        port,
        b"GET /latin1 HTTP/1.1\r\nHost: shop.example.com\r\nX-Name: caf\xe9 cr\xe8me\r\n"
        b"X-Bytes: \xff\xfe\x80\r\nConnection: close\r\n\r\n",
    )
    live["latin1"] = answer.split(b"\r\n", 1)[0]

    # 4. HTTPS from the client, HTTP/1.1 and HTTP/2, trusting mitmproxy's CA.
    cafile = confdir / "mitmproxy-ca-cert.pem"
    for version, http2 in (("h1", False), ("h2", True)):
        got = tls_request(port, cafile, f"/tls/{version}?q=1", http2=http2)
        big = tls_request(port, cafile, f"/tls/{version}/big", upload[:200_000], http2=http2)
        live[version] = (got[1], got[0], big[1], json.loads(big[2]))

    assert recorder.stop() == 0
    assert "recorded=8 dropped=0 failed=0" in recorder.stderr, recorder.stderr
    assert "Traceback" not in recorder.stderr

    # Live: every exchange intact.
    sha = hashlib.sha256(upload).hexdigest()
    assert live["upload"] == (200, {**live["upload"][1], "body_sha256": sha})
    assert live["upload"][1]["body_length"] == len(upload)
    assert live["download"] == (200, bytes(i % 251 for i in range(3_000_000)))
    assert live["chunked"][0] == 200
    assert live["chunked"][1]["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert live["latin1"] == b"HTTP/1.1 200 OK"
    assert live["h1"][:3] == (200, "HTTP/1.1", 200)
    assert live["h2"][:3] == (200, "HTTP/2", 200)
    assert live["h2"][3]["body_sha256"] == hashlib.sha256(upload[:200_000]).hexdigest()
    received = {r.path: r for r in app.wait_for(8)}
    assert received["/latin1"].header("X-Name") == "caf\xe9 cr\xe8me"

    events = {e["path"]: e for _, e in read_events(kafka.bootstrap_servers, topic, 8)}
    assert len(events) == 8

    e = events[b"/huge-upload"]["request"]
    assert (e["body_truncated"], e["body_length"], e["body"]) == (True, len(upload), upload[:CAP])
    e = events[b"/bytes/3000000"]["response"]["message"]
    assert (e["body_truncated"], e["body_length"]) == (True, 3_000_000)
    assert e["body"] == live["download"][1][:CAP]

    e = events[b"/chunked"]["request"]
    assert (e["body_truncated"], e["body"]) == (False, b"".join(parts))
    assert (b"Transfer-Encoding", b"chunked") in pairs(e["headers"])

    headers = pairs(events[b"/latin1"]["request"]["headers"])
    assert (b"X-Name", b"caf\xe9 cr\xe8me") in headers
    assert (b"X-Bytes", b"\xff\xfe\x80") in headers

    for version, http_version in (("h1", "HTTP/1.1"), ("h2", "HTTP/2.0")):
        event = events[f"/tls/{version}?q=1".encode()]
        assert (event["scheme"], event["http_version"]) == ("https", http_version)
        assert event["authority"] == f"127.0.0.1:{port}"
        assert event["response"]["status"] == 200
        big = events[f"/tls/{version}/big".encode()]["request"]
        assert (big["body_truncated"], big["body_length"]) == (True, 200_000)
        assert big["body"] == upload[:CAP]
    # The HTTP/2 upload came without Content-Length; the recorder's proxy adds
    # one for the HTTP/1.1 app (mitmproxy alone would send the body unframed,
    # and the app saw an empty body), and the event keeps what the client sent.
    h2_names = [n.lower() for n, _ in pairs(events[b"/tls/h2/big"]["request"]["headers"])]
    assert b"content-length" not in h2_names

    # inspect reads every one of them back (bytes that are not UTF-8 as base64).
    result = run_cli(["inspect", "-b", kafka.bootstrap_servers, "-t", topic])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 8 and all("id" in line and line["error"] is None for line in lines)
