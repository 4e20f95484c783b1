"""`trafficmirror record` as a real process, at its edges: secrets outside headers, bodies at
the cap, and HTTP/2 clients without TLS (h2c with prior knowledge).

One recorder (default settings, a /metrics port) in front of one real app serves every test
of the module; each test finds its own events in the topic by their path. The events are
read back from the broker as raw message bytes, so "not in Kafka" means not in any byte.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import Codec
from tests.support import Kafka, Proc, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import RecordingShadow

pytestmark = pytest.mark.e2e

CAP = 1024 * 1024  # the default --max-body-bytes


@dataclass
class Recorder:
    proc: Proc
    port: int
    metrics_port: int
    topic: str
    bootstrap: str
    app: RecordingShadow

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return str(response.read().decode())

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def find(self, wanted: Callable[[dict[str, Any]], bool], count: int = 1) -> list[Any]:
        """(message, event) of the first `count` events `wanted` accepts, read from the start."""
        found: list[Any] = []
        deadline = time.monotonic() + 15
        while len(found) < count and time.monotonic() < deadline:
            found = [(m, e) for m, e in self.scan() if wanted(e)]
            if len(found) < count:
                time.sleep(0.1)
        assert len(found) == count, f"found {len(found)} of {count} events"
        return found

    def scan(self) -> list[Any]:
        """(message, event) of every event in the topic now, up to its high watermark."""
        codec = Codec()
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "unused", "enable.auto.commit": False}
        )
        got: list[Any] = []
        try:
            partition = TopicPartition(self.topic, 0, OFFSET_BEGINNING)
            _, high = consumer.get_watermark_offsets(partition, timeout=10)
            consumer.assign([partition])
            deadline = time.monotonic() + 10
            while len(got) < high and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    got.append((msg, codec.decode(msg.value())))
        finally:
            consumer.close()
        return got


@pytest.fixture(scope="module")
def recorder(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    procs = Procs(tmp_path_factory.mktemp("record-edges"))
    topic = kafka.new_topic(1)
    port, metrics_port = free_port(), free_port()
    with RecordingShadow() as app:
        proc = procs.start(
            "record",
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
                "--metrics-port",
                str(metrics_port),
            ],
        )
        try:
            wait_port(port, timeout=15)
            yield Recorder(proc, port, metrics_port, topic, kafka.bootstrap_servers, app)
        except BaseException:
            print(procs.dump())
            raise
        finally:
            procs.close()


def send(
    rec: Recorder, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> int:
    conn = rec.connection()
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_query_and_form_secrets_never_reach_kafka(recorder: Recorder) -> None:
    secrets = [b"Qs3cret-apikey-1", b"Fs3cret-password-2", b"Ms3cret-token-3", b"Ss3cret-sig-4"]
    # /bytes/N answers N bytes: the sample app echoes the path of any other request.
    query = f"/bytes/3?q=shoes&api_key={secrets[0].decode()}&X-Amz-Signature={secrets[3].decode()}"
    assert send(recorder, "GET", query) == 200
    form = b"user=ann&password=" + secrets[1] + b"&remember=1"
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    assert send(recorder, "POST", "/login?next=%2Fhome", form, form_type) == 200
    multipart = (
        b'--BND\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + secrets[2] + b"\r\n"
        b'--BND\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--BND--\r\n'
    )
    multipart_type = {"Content-Type": "multipart/form-data; boundary=BND"}
    assert send(recorder, "POST", "/upload-form", multipart, multipart_type) == 200

    paths = (b"/bytes/3?", b"/login?", b"/upload-form")
    found = recorder.find(lambda e: e["path"].startswith(paths), count=3)
    for msg, _ in found:
        for secret in secrets:
            assert secret not in msg.value()
    events = {e["path"].split(b"?")[0]: e for _, e in found}
    assert events[b"/bytes/3"]["path"] == b"/bytes/3?q=shoes&api_key=***&X-Amz-Signature=***"
    # Where nothing matched, the path is kept byte for byte.
    assert events[b"/login"]["path"] == b"/login?next=%2Fhome"
    assert events[b"/login"]["request"]["body"] == b"user=ann&password=***&remember=1"
    assert events[b"/upload-form"]["request"]["body"] == multipart.replace(secrets[2], b"***")
    assert events[b"/bytes/3"]["recorder"]["redactions"] == [
        "request.query:api_key=mask",
        "request.query:x-amz-signature=mask",
    ]
    assert events[b"/login"]["recorder"]["redactions"] == ["request.form:password=mask"]
    # The live request was not altered: the app got every secret.
    received = b"".join(r.path.encode() + r.body for r in recorder.app.received)
    for secret in secrets:
        assert secret in received


def test_a_body_at_the_cap_is_recorded_whole_and_replayed(recorder: Recorder, kafka: Kafka) -> None:
    whole = os.urandom(CAP)  # incompressible, exactly --max-body-bytes
    over = os.urandom(CAP + 1)
    octets = {"Content-Type": "application/octet-stream"}
    assert send(recorder, "POST", "/cap/at", whole, octets) == 200
    assert send(recorder, "POST", "/cap/over", over, octets) == 200
    [(msg, at)] = recorder.find(lambda e: e["path"] == b"/cap/at")
    assert len(msg.value()) > 1_000_000  # over librdkafka's default message.max.bytes
    request = at["request"]
    assert (request["body_truncated"], request["body_length"]) == (False, CAP)
    assert request["body"] == whole
    [(_, cut)] = recorder.find(lambda e: e["path"] == b"/cap/over")
    assert cut["request"]["body_truncated"] is True
    assert (cut["request"]["body_length"], len(cut["request"]["body"])) == (CAP + 1, CAP)
    # Counted and said: the metric, and a warning line.
    assert 'trafficmirror_recorder_truncated_total{part="request"} 1.0' in recorder.metrics()
    deadline = time.monotonic() + 5
    while "was recorded cut" not in recorder.proc.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"/cap/over) was recorded cut: {CAP} of {CAP + 1} bytes kept" in recorder.proc.stderr

    with RecordingShadow() as shadow:
        result = run_cli(
            [
                "replay",
                "range",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                recorder.topic,
                "--start-offset",
                str(msg.offset()),
                "--end-offset",
                str(msg.offset() + 1),
                "--target",
                shadow.url,
                "--methods",
                "ALL",
            ],
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        [got] = shadow.wait_for(1)
    assert (got.method, got.path, got.body == whole) == ("POST", "/cap/at", True)


def h2c_exchange(port: int, path: str, body: bytes, split: int = 0) -> tuple[int, bytes]:
    """One POST over HTTP/2 with prior knowledge (no TLS, no upgrade): (status, body).

    With `split`, the first `split` bytes of the preface go out alone, a moment before
    the rest.
    """
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        conn.initiate_connection()
        headers = [
            (":method", "POST"),
            (":path", path),
            (":scheme", "http"),
            (":authority", "shop.example.com"),
            ("content-length", str(len(body))),
        ]
        conn.send_headers(1, headers)
        conn.send_data(1, body, end_stream=True)
        data = conn.data_to_send()
        if split:
            sock.sendall(data[:split])
            time.sleep(0.1)
            data = data[split:]
        sock.sendall(data)
        status, received, ended = 0, b"", False
        while not ended:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    received += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
        conn.close_connection()
        sock.sendall(conn.data_to_send())
    return status, received


def test_an_h2c_prior_knowledge_client_is_served_and_recorded(recorder: Recorder) -> None:
    status, body = h2c_exchange(recorder.port, "/h2c/order?x=1", b'{"item": 7}')
    assert status == 200 and b"/h2c/order" in body
    [(_, event)] = recorder.find(lambda e: e["path"].startswith(b"/h2c/"))
    assert (event["method"], event["http_version"], event["authority"]) == (
        "POST",
        "HTTP/2.0",
        "shop.example.com",
    )
    assert event["request"]["body"] == b'{"item": 7}' and event["error"] is None
    assert event["response"] is not None and event["response"]["status"] == 200
    # A preface that arrives in pieces ("PRI *" first: it could still be HTTP/1) too.
    status, body = h2c_exchange(recorder.port, "/h2c/split", b"", split=5)
    assert status == 200 and b"/h2c/split" in body
    recorder.find(lambda e: e["path"] == b"/h2c/split" and e["http_version"] == "HTTP/2.0")
    # No `PRI *` pseudo-exchange was recorded for the preface.
    assert [e["path"] for _, e in recorder.scan() if e["method"] == "PRI"] == []
