"""`record --mirror`: the target of a mirror rule, through real processes.

Debian's nginx mirrors a real app's traffic to `trafficmirror record --mirror`
(tests/nginx.py): the live clients see only the app's answers, every mirrored
request becomes an event without a response, and with the recorder away the
live path does not notice. `record --mirror` is also driven directly (bodies
under and over the cap, chunked, keep-alive, Envoy's -shadow Host) and as
`mitmdump -s recorder/addon.py` with a listening placeholder upstream that
must never be contacted. The helpers at the top are plain unit tests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import connection
from mitmproxy import http as mitmhttp
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from recorder import addon as addon_module
from recorder import options
from recorder.capture import CaptureBudget
from recorder.config import MIRROR_PLACEHOLDER, RecordConfig
from recorder.event import CAPTURE_MIRROR, flow_to_event, recorder_info
from recorder.mirror import Mirror, body_size, check_modes, strip_shadow
from tests.nginx import mirror_site, nginx
from tests.recorder.helpers import read_events
from tests.recorder.test_odd_traffic import tls_request
from tests.support import Kafka, Proc, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import RecordingShadow, summary
from trafficmirror.plumbing.kafka import KafkaSettings

MITMDUMP = Path(sys.executable).parent / "mitmdump"
SUMMARY = re.compile(r"recorded=(\d+) dropped=(\d+) failed=(\d+)")
CAP = 65536


# -- helpers of the addon ------------------------------------------------------------


def _request(headers: dict[str, str], http_version: str = "HTTP/1.1") -> mitmhttp.Request:
    req = mitmhttp.Request.make("POST", "http://mirror.invalid/p")
    req.headers.clear()  # make() added a Host of its own
    req.headers.update(headers)
    req.http_version = http_version
    return req


def test_strip_shadow_keeps_the_original_authority() -> None:
    cases = {
        "shop.example.com-shadow": "shop.example.com",
        "shop.example.com-shadow:8080": "shop.example.com:8080",
        "10.0.0.7-shadow:80": "10.0.0.7:80",
        "[::1]-shadow:8080": "[::1]:8080",
    }
    for shadowed, original in cases.items():
        req = _request({"Host": shadowed})
        assert strip_shadow(req)
        assert req.headers["host"] == original
    for untouched in ("shop.example.com", "my-shadow-app.example", "shadow:80", "-shadow"):
        req = _request({"Host": untouched})
        assert not strip_shadow(req)
        assert req.headers["host"] == untouched
    h2 = _request({}, "HTTP/2.0")
    h2.data.authority = b"api.internal-shadow:9000"
    assert strip_shadow(h2)
    assert h2.data.authority == b"api.internal:9000"


def test_body_size_is_known_only_from_the_headers() -> None:
    assert body_size(_request({})) == 0  # HTTP/1 without framing: no body
    assert body_size(_request({"Content-Length": "12"})) == 12
    assert body_size(_request({"Transfer-Encoding": "chunked"})) is None
    assert body_size(_request({}, "HTTP/2.0")) is None  # may or may not have one
    assert body_size(_request({"content-length": "5"}, "HTTP/2.0")) == 5


def test_check_modes_wants_reverse_http() -> None:
    check_modes([f"reverse:{MIRROR_PLACEHOLDER}", "reverse:http://127.0.0.1:9@8081"])
    for bad in ("regular", "reverse:https://example.com", "transparent"):
        with pytest.raises(Exception, match="trafficmirror_mirror needs --mode reverse"):
            check_modes([bad])


def _mirror_flow(headers: dict[str, str]) -> Any:
    flow = tflow.tflow()
    flow.request.headers.clear()
    flow.request.headers.update({"Host": "shop.example.com", **headers})
    flow.request.content = None  # headers only, as in the requestheaders hook
    return flow


def test_mirror_answers_what_it_can_hold_and_streams_the_rest() -> None:
    async def scenario() -> None:
        mirror = Mirror(CaptureBudget(150))
        with taddons.context(mirror) as tctx:
            options.declare(tctx.options)
            # A proxyserver option, which taddons' bare master does not have.
            tctx.options.add_option("keep_host_header", bool, False, "")
            tctx.configure(
                mirror,
                mode=[f"reverse:{MIRROR_PLACEHOLDER}"],
                keep_host_header=True,
                trafficmirror_mirror=True,
                trafficmirror_max_body_bytes=100,
            )
            discard = mirror._discard
            assert discard is not None
            small = [_mirror_flow({"Content-Length": "80"}) for _ in range(2)]
            empty = _mirror_flow({})
            over_cap = _mirror_flow({"Content-Length": "101"})
            chunked = _mirror_flow({"Transfer-Encoding": "chunked"})
            for flow in (*small, empty, over_cap, chunked):
                mirror.requestheaders(flow)
            # Answered at once: the first small one and the bodiless one; the
            # second small one would pass the budget of bytes held together.
            answered = [f for f in (*small, empty, over_cap, chunked) if f.response is not None]
            assert answered == [small[0], empty]
            assert small[0].response.status_code == 200 and small[0].response.content == b""
            assert not small[0].request.stream
            assert mirror.budget.held == 80
            for flow in (small[1], over_cap, chunked):
                assert flow.request.stream
                assert (flow.request.host, flow.request.port) == discard.address
                assert flow.request.headers["host"] == "shop.example.com"
            mirror.response(small[0])
            mirror.error(empty)
            assert mirror.budget.held == 0
            # Whatever address mitmproxy would connect to, it is the discard server.
            data = server_hooks.ServerConnectionHookData(
                server=connection.Server(address=("mirror.invalid", 80)),
                client=small[0].client_conn,
            )
            mirror.server_connect(data)
            assert data.server.address == discard.address
            # Replays and a switched-off mirror are left alone.
            replay = _mirror_flow({})
            replay.is_replay = "request"
            mirror.requestheaders(replay)
            assert replay.response is None
            tctx.configure(mirror, trafficmirror_mirror=False)
            off = _mirror_flow({})
            mirror.requestheaders(off)
            assert off.response is None
            mirror.done()
            # On after done(): a connection is refused rather than sent to the placeholder.
            late = server_hooks.ServerConnectionHookData(
                server=connection.Server(address=("mirror.invalid", 80)),
                client=small[0].client_conn,
            )
            tctx.configure(mirror, trafficmirror_mirror=True)
            mirror.done()
            mirror.server_connect(late)
            assert late.server.address == ("mirror.invalid", 80) and late.server.error

    asyncio.run(scenario())


def test_mirror_event_has_no_response_and_no_server() -> None:
    flow = tflow.tflow(resp=True)
    event = flow_to_event(flow, CAP, recorder_info("r", capture=CAPTURE_MIRROR))
    assert event["response"] is None
    assert event["server"] is None
    assert event["response_start_us"] is None and event["response_end_us"] is None
    assert event["recorder"]["capture"] == "mirror"
    assert flow_to_event(flow, CAP, recorder_info("r"))["response"] is not None


def test_record_config_mirror_or_upstream() -> None:
    base: dict[str, Any] = {
        "settings": KafkaSettings.from_options("127.0.0.1:9092"),
        "topic": "t",
        "listen_host": "127.0.0.1",
        "listen_port": 8081,
        "max_body_bytes": CAP,
        "recorder_id": None,
        "flush_timeout": 1.0,
        "schema_registry_url": None,
        "metrics_host": "127.0.0.1",
        "metrics_port": None,
    }
    values = RecordConfig(**base, upstream=None, mirror=True).mitmproxy_options()
    assert values["mode"] == [f"reverse:{MIRROR_PLACEHOLDER}"]
    assert values["trafficmirror_mirror"] is True
    assert values["keep_host_header"] is True
    assert (
        "trafficmirror_mirror" not in RecordConfig(**base, upstream="http://a").mitmproxy_options()
    )
    for wrong in ({"upstream": "http://a", "mirror": True}, {"upstream": None}):
        with pytest.raises(ValueError, match="either an upstream or mirror"):
            RecordConfig(**base, **wrong)


# -- real processes ------------------------------------------------------------------


def start_mirror(procs: Procs, kafka: Kafka, topic: str, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        "mirror",
        [
            "record",
            "--mirror",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--listen",
            f"127.0.0.1:{port}",
            "--recorder-id",
            "mirror-test",
            *extra,
        ],
    )
    try:
        wait_port(port, timeout=15)
    except TimeoutError:
        proc.stop()
        raise AssertionError(f"record --mirror did not start:\n{proc.stderr}") from None
    return proc, port


def recorded(text: str) -> tuple[int, int, int]:
    found = SUMMARY.findall(text)
    assert len(found) == 1, f"expected one summary line in:\n{text}"
    a, b, c = (int(n) for n in found[0])
    return a, b, c


def send(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    *,
    chunks: list[bytes] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """One request on `conn` (kept open); chunks go chunked."""
    if chunks is not None:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        for chunk in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    else:
        conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read(), dict(response.getheaders())


def by_path(events: list[tuple[Any, dict[str, Any]]]) -> dict[bytes, dict[str, Any]]:
    return {event["path"]: event for _, event in events}


def metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match[1])


@pytest.mark.e2e
def test_record_mirror_answers_at_once_and_records_requests_only(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(2)
    metrics_port = free_port()
    proc, port = start_mirror(
        procs, kafka, topic, "--max-body-bytes", str(CAP), "--metrics-port", str(metrics_port)
    )
    order = json.dumps({"sku": "A-1", "qty": 2}).encode()
    large = os.urandom(3 * CAP + 17)
    chunks = [b"part-one;", b"part-two;", b"end"]
    host = {"Host": "shop.example.com"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = [
        send(conn, "GET", "/search?q=caf%C3%A9", {**host, "X-Forwarded-For": "203.0.113.9"}),
        send(conn, "POST", "/orders", {**host, "Content-Type": "application/json"}, order),
        send(conn, "PUT", "/upload", host, large),
        send(conn, "POST", "/chunked", host, chunks=chunks),
        send(conn, "DELETE", "/orders/7", {"Host": "shop.example.com-shadow:8080"}),
    ]
    local = conn.sock.getsockname() if conn.sock else None
    conn.close()
    assert local is not None, "the recorder closed the keep-alive connection"
    for status, body, headers in answers:
        assert (status, body) == (200, b"")
        assert headers.get("content-length") == "0"
        assert "close" not in headers.get("connection", "").lower()
    # The large and the chunked body took the streaming path.
    assert metric(metrics_port, "trafficmirror_recorder_mirror_streamed_total") == 2
    assert proc.stop() == 0
    assert recorded(proc.stderr) == (5, 0, 0)

    events = by_path(read_events(kafka.bootstrap_servers, topic, 5))
    assert len(events) == 5
    for event in events.values():
        assert event["response"] is None and event["error"] is None
        assert event["server"] is None
        assert event["recorder"]["capture"] == "mirror"
        assert event["recorder"]["recorder_id"] == "mirror-test"
        assert event["client"]["host"] == "127.0.0.1"
    search = events[b"/search?q=caf%C3%A9"]
    assert (search["method"], search["authority"]) == ("GET", "shop.example.com")
    # Forwarding headers are kept as they came, not interpreted.
    assert b"203.0.113.9" in search["request"]["headers"]
    posted = events[b"/orders"]["request"]
    assert (posted["body"], posted["body_truncated"], posted["body_length"]) == (
        order,
        False,
        len(order),
    )
    upload = events[b"/upload"]["request"]
    assert (upload["body"], upload["body_truncated"], upload["body_length"]) == (
        large[:CAP],
        True,
        len(large),
    )
    chunked = events[b"/chunked"]["request"]
    assert (chunked["body"], chunked["body_truncated"], chunked["body_length"]) == (
        b"".join(chunks),
        False,
        len(b"".join(chunks)),
    )
    assert events[b"/orders/7"]["authority"] == "shop.example.com:8080"


@pytest.mark.e2e
def test_nginx_mirror_to_record_mirror(kafka: Kafka, procs: Procs, tmp_path: Path) -> None:
    topic = kafka.new_topic(4)
    front = free_port()
    recorder, recorder_port = start_mirror(procs, kafka, topic, "--max-body-bytes", str(CAP))
    with (
        RecordingShadow() as app,
        nginx(mirror_site(front, app.port, recorder_port), tmp_path) as proxy,
    ):
        requests = []
        for i in range(24):
            if i % 3 == 1:
                body = json.dumps({"n": i, "pad": "x" * (i * 100)}).encode()
                requests.append(("POST", f"/orders?i={i}", body))
            else:
                requests.append(("GET", f"/items/{i}?q=a%20b", b""))

        def live(batch: list[tuple[str, str, bytes]]) -> list[tuple[float, int, bytes, str]]:
            conns = [http.client.HTTPConnection("127.0.0.1", front, timeout=10) for _ in range(3)]
            out = []
            for n, (method, path, body) in enumerate(batch):
                started = time.perf_counter()
                status, payload, headers = send(
                    conns[n % 3], method, path, {"Host": "shop.example.com"}, body or None
                )
                out.append(
                    (time.perf_counter() - started, status, payload, headers["Content-Type"])
                )
            for conn in conns:
                conn.close()
            return out

        # The live clients get the app's answers, nothing of the mirror's.
        answers = live(requests)
        for (method, path, body), (_, status, payload, ctype) in zip(
            requests, answers, strict=True
        ):
            assert status == 200
            assert json.loads(payload) == summary(method, path, body)
            assert ctype.startswith("application/json")
        assert len(app.wait_for(len(requests))) == len(requests)

        # Every mirrored request was recorded, as the client sent it.
        events = read_events(kafka.bootstrap_servers, topic, len(requests), timeout=20)
        assert len(events) == len(requests), proxy.error_log
        recorded_requests = sorted(
            (e["method"], e["path"].decode(), e["request"]["body"]) for _, e in events
        )
        assert recorded_requests == sorted(requests)
        for _, event in events:
            assert event["authority"] == "shop.example.com"
            assert event["response"] is None and event["error"] is None
            assert event["recorder"]["capture"] == "mirror"
            assert not event["request"]["body_truncated"]

        # With the mirror target down, the live path does not notice.
        assert recorder.stop() == 0
        assert recorded(recorder.stderr) == (len(requests), 0, 0)
        later = live([("GET", f"/after/{i}", b"") for i in range(12)])
        assert [status for _, status, _, _ in later] == [200] * 12
        assert max(elapsed for elapsed, _, _, _ in later) < 1.0, later
        assert len(app.wait_for(len(requests) + 12)) == len(requests) + 12
        assert "Connection refused" in proxy.error_log


@pytest.mark.e2e
def test_record_mirror_over_https_and_http2(kafka: Kafka, procs: Procs, tmp_path: Path) -> None:
    """A mirror source may speak TLS, and HTTP/2 (an HTTP/2 body has no Content-Length here)."""
    topic = kafka.new_topic(2)
    confdir = tmp_path / "mitmproxy"
    proc, port = start_mirror(
        procs, kafka, topic, "--max-body-bytes", str(CAP), "--confdir", str(confdir)
    )
    ca = confdir / "mitmproxy-ca-cert.pem"
    body = b"h2 body " * 1000
    answers = [
        tls_request(port, ca, "/h1-post", body),
        tls_request(port, ca, "/h2-get?x=1", http2=True),
        tls_request(port, ca, "/h2-post", body, http2=True),
        tls_request(port, ca, "/h2-large", os.urandom(CAP * 3), http2=True),
    ]
    assert [(status, payload) for _, status, payload in answers] == [(200, b"")] * 4
    assert [protocol for protocol, _, _ in answers] == ["HTTP/1.1", "HTTP/2", "HTTP/2", "HTTP/2"]
    assert proc.stop() == 0
    assert recorded(proc.stderr) == (4, 0, 0)
    events = by_path(read_events(kafka.bootstrap_servers, topic, 4))
    for path, version in (
        (b"/h1-post", "HTTP/1.1"),
        (b"/h2-get?x=1", "HTTP/2.0"),
        (b"/h2-post", "HTTP/2.0"),
        (b"/h2-large", "HTTP/2.0"),
    ):
        event = events[path]
        assert (event["scheme"], event["http_version"]) == ("https", version)
        assert event["response"] is None and event["error"] is None
        assert event["authority"] == f"127.0.0.1:{port}"
    for path in (b"/h1-post", b"/h2-post"):
        request = events[path]["request"]
        assert (request["body"], request["body_truncated"], request["body_length"]) == (
            body,
            False,
            len(body),
        )
    large = events[b"/h2-large"]["request"]
    assert (large["body_truncated"], large["body_length"], len(large["body"])) == (
        True,
        CAP * 3,
        CAP,
    )
    # The event keeps the headers the client sent: no framing header added on the way.
    names = [name.lower() for name in events[b"/h2-post"]["request"]["headers"][::2]]
    assert b"transfer-encoding" not in names and b"content-length" not in names


def _rss_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match[1]) / 1024


@pytest.mark.e2e
def test_large_mirrored_body_streams_in_bounded_memory(kafka: Kafka, procs: Procs) -> None:
    """200 MB mirrored: answered after it passed, never held; the event keeps the first cap."""
    topic = kafka.new_topic(2)
    cap = 256 * 1024  # the default 1 MiB would not fit librdkafka's default message size
    proc, port = start_mirror(procs, kafka, topic, "--max-body-bytes", str(cap))
    block = os.urandom(1 << 20)
    size = 200 << 20

    def upload(path: str, length: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        for offset in range(0, length, len(block)):
            conn.send(block[: length - offset])
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    # Warm up both paths (answered at once, streamed) before the idle reading.
    assert upload("/warm", 1000) == 200
    assert upload("/warm-large", 4 << 20) == 200
    idle = _rss_mb(proc.popen.pid, "VmRSS")
    assert upload("/large", size) == 200
    growth = _rss_mb(proc.popen.pid, "VmHWM") - idle
    # Bound: the kept prefix and its encoding, a few read buffers; far below the body.
    assert growth < 48, f"RSS grew {growth:.0f} MB above idle for a 200 MB body"
    assert proc.stop() == 0
    assert recorded(proc.stderr) == (3, 0, 0)
    events = by_path(read_events(kafka.bootstrap_servers, topic, 3))
    large = events[b"/large"]["request"]
    assert (large["body"], large["body_truncated"], large["body_length"]) == (
        block[:cap],
        True,
        size,
    )


def test_record_mirror_refuses_upstream_in_one_line(kafka: Kafka) -> None:
    base = ["record", "-b", kafka.bootstrap_servers, "-t", "t", "--listen", "127.0.0.1:0"]
    both = run_cli([*base, "--mirror", "--upstream", "http://127.0.0.1:8080"], timeout=30)
    assert both.returncode == 2
    lines = both.stderr.strip().splitlines()
    assert len(lines) == 1 and "--upstream" in lines[0] and "--mirror" in lines[0], both.stderr
    neither = run_cli(base, timeout=30)
    assert neither.returncode == 2
    lines = neither.stderr.strip().splitlines()
    assert len(lines) == 1 and "--upstream" in lines[0] and "--mirror" in lines[0], neither.stderr


class ConnectionCounter:
    """A listening socket that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def placeholder() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()


def mitmdump(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "mitmdump.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(MITMDUMP), "-s", addon_module.__file__, "--set", "flow_detail=0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return proc, log


@pytest.mark.e2e
@pytest.mark.parametrize("strategy", ["eager", "lazy"])
def test_mitmdump_mirror_contacts_nothing(
    kafka: Kafka, tmp_path: Path, placeholder: ConnectionCounter, strategy: str
) -> None:
    topic = kafka.new_topic(2)
    port = free_port()
    proc, log = mitmdump(
        tmp_path,
        "--mode",
        f"reverse:http://127.0.0.1:{placeholder.port}@127.0.0.1:{port}",
        "--set",
        "keep_host_header=true",
        "--set",
        f"connection_strategy={strategy}",
        "--set",
        "trafficmirror_mirror=true",
        "--set",
        f"trafficmirror_max_body_bytes={CAP}",
        "--set",
        f"trafficmirror_bootstrap_servers={kafka.bootstrap_servers}",
        "--set",
        f"trafficmirror_topic={topic}",
    )
    try:
        wait_port(port, timeout=15)
        answers = []
        for i in range(2):  # two connections: the second reuses nothing of the first
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            host = {"Host": "app.example"}
            answers += [
                send(conn, "GET", f"/get/{i}", host),
                send(conn, "POST", f"/small/{i}", host, b"x" * 100),
                send(conn, "POST", f"/large/{i}", host, b"y" * (CAP * 2)),
                send(conn, "POST", f"/chunked/{i}", host, chunks=[b"a", b"b"]),
            ]
            conn.close()
        assert [(s, b) for s, b, _ in answers] == [(200, b"")] * 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    output = log.read_text(errors="replace")
    assert recorded(output) == (8, 0, 0), output
    assert placeholder.accepted == 0
    events = read_events(kafka.bootstrap_servers, topic, 8)
    assert len(events) == 8
    for _, event in events:
        assert event["recorder"]["capture"] == "mirror"
        assert event["response"] is None and event["error"] is None
        assert event["authority"] == "app.example"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "regular"], "trafficmirror_mirror needs --mode reverse:"),
        (["--mode", "reverse:http://127.0.0.1:9"], "trafficmirror_mirror needs keep_host_header"),
    ],
)
def test_mitmdump_mirror_misconfigured_is_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    port = free_port()
    proc, log = mitmdump(
        tmp_path,
        *args,
        "--listen-port",
        str(port),
        "--set",
        "trafficmirror_mirror=true",
    )
    try:
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code != 0
    assert message in log.read_text(errors="replace")
