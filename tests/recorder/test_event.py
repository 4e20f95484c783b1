"""Flow → event conversion: every field, Host, truncation, streaming, errors."""

from __future__ import annotations

import gzip
from typing import Any

from mitmproxy import connection, flow, http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

from recorder.capture import BodyCapture, CaptureBudget
from recorder.event import UNKNOWN_LENGTH, flow_to_event, recorder_info
from recorder.redact import Redactor
from schemas.codec import Codec

T0 = 1_700_000_000.123456


def client(tls: bool = False, peer: tuple[Any, ...] = ("10.1.2.3", 51234)) -> connection.Client:
    return connection.Client(
        peername=peer,
        sockname=("127.0.0.1", 8081),
        timestamp_start=T0 - 1,
        tls=tls,
        proxy_mode=ProxyMode.parse("reverse:http://127.0.0.1:8080"),
    )


def server(connected: bool = True) -> connection.Server:
    return connection.Server(
        address=("127.0.0.1", 8080),
        peername=("127.0.0.1", 8080) if connected else None,
    )


def request(
    headers: list[tuple[bytes, bytes]] | None = None,
    content: bytes | None = b"",
    path: bytes = b"/search?q=caf%C3%A9&tag=a&tag=b",
    method: bytes = b"GET",
    http_version: bytes = b"HTTP/1.1",
    authority: bytes = b"",
    trailers: http.Headers | None = None,
) -> http.Request:
    if headers is None:
        headers = [(b"Host", b"shop.example.com"), (b"Accept", b"*/*")]
    return http.Request(
        host="127.0.0.1",  # the upstream: mitmproxy's destination, not the client's Host
        port=8080,
        method=method,
        scheme=b"http",
        authority=authority,
        path=path,
        http_version=http_version,
        headers=http.Headers(headers),
        content=content,
        trailers=trailers,
        timestamp_start=T0,
        timestamp_end=T0 + 0.0005,
    )


def response(content: bytes | None = b'{"ok": true}', headers: Any = None) -> http.Response:
    return http.Response(
        http_version=b"HTTP/1.1",
        status_code=201,
        reason=b"Created",
        headers=http.Headers(headers or [(b"Content-Type", b"application/json")]),
        content=content,
        trailers=None,
        timestamp_start=T0 + 0.010,
        timestamp_end=T0 + 0.011,
    )


def make_flow(
    req: http.Request | None = None,
    resp: http.Response | None = None,
    err: str | None = None,
    tls: bool = False,
    connected: bool = True,
) -> http.HTTPFlow:
    f = http.HTTPFlow(client(tls), server(connected))
    f.request = req or request()
    f.response = resp
    f.error = flow.Error(err) if err else None
    return f


INFO = recorder_info("rec-1")


def roundtrip(event: dict[str, Any]) -> dict[str, Any]:
    """Encode and decode: the event must fit the v1 schema exactly."""
    codec = Codec()
    return codec.decode(codec.encode(event).value)


def test_every_field_of_a_complete_exchange() -> None:
    req = request(
        headers=[
            (b"Host", b"shop.example.com"),
            (b"X-Dup", b"1"),
            (b"Content-Type", b"application/json"),
            (b"x-dup", b"2"),
            (b"X-DUP", b"3"),
        ],
        content=b'{"sku": 1}',
        method=b"POST",
        trailers=http.Headers([(b"X-Checksum", b"abc")]),
    )
    f = make_flow(req, response(headers=[(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]))
    event = flow_to_event(f, 1024, INFO)
    assert event == {
        "id": f.id,
        "request_start_us": 1_700_000_000_123_456,
        "request_end_us": 1_700_000_000_123_956,
        "response_start_us": 1_700_000_000_133_456,
        "response_end_us": 1_700_000_000_134_456,
        "client": {"host": "10.1.2.3", "port": 51234},
        "server": {"host": "127.0.0.1", "port": 8080},
        "scheme": "http",
        "method": "POST",
        "authority": "shop.example.com",
        "path": b"/search?q=caf%C3%A9&tag=a&tag=b",
        "http_version": "HTTP/1.1",
        "request": {
            "headers": [
                b"Host",
                b"shop.example.com",
                b"X-Dup",
                b"1",
                b"Content-Type",
                b"application/json",
                b"x-dup",
                b"2",
                b"X-DUP",
                b"3",
            ],
            "body": b'{"sku": 1}',
            "body_truncated": False,
            "body_length": 10,
            "trailers": [b"X-Checksum", b"abc"],
        },
        "response": {
            "status": 201,
            "reason": b"Created",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": [b"Set-Cookie", b"a=1", b"Set-Cookie", b"b=2"],
                "body": b'{"ok": true}',
                "body_truncated": False,
                "body_length": 12,
                "trailers": None,
            },
        },
        "error": None,
        "recorder": {
            "recorder_id": "rec-1",
            "sampling_rate": 1.0,
            "redactions": [],
            "capture": "proxy",
        },
        "kind": "http",
        "websocket": None,
    }
    assert roundtrip(event) == event


def test_authority_is_the_clients_host_not_the_upstream() -> None:
    event = flow_to_event(make_flow(request(headers=[(b"HOST", b"Shop.Example:443")])), 10, INFO)
    assert event["authority"] == "Shop.Example:443"
    assert event["server"] == {"host": "127.0.0.1", "port": 8080}


def test_http2_authority_comes_from_the_pseudo_header() -> None:
    req = request(headers=[(b"accept", b"*/*")], http_version=b"HTTP/2.0", authority=b"api.example")
    event = flow_to_event(make_flow(req), 10, INFO)
    assert event["authority"] == "api.example"
    assert event["http_version"] == "HTTP/2.0"
    assert roundtrip(event) == event


def test_no_host_header_gives_empty_authority() -> None:
    req = request(headers=[], http_version=b"HTTP/1.0")
    assert flow_to_event(make_flow(req), 10, INFO)["authority"] == ""


def test_long_body_is_cut_and_keeps_its_original_length() -> None:
    body = bytes(range(256)) * 4
    f = make_flow(request(content=body, method=b"PUT"), response(content=b"x" * 50))
    event = flow_to_event(f, 100, INFO)
    assert event["request"]["body"] == body[:100]
    assert event["request"]["body_truncated"] is True
    assert event["request"]["body_length"] == 1024
    assert event["response"]["message"]["body"] == b"x" * 50
    assert event["response"]["message"]["body_truncated"] is False
    assert roundtrip(event) == event


def test_body_of_exactly_the_limit_is_not_truncated() -> None:
    event = flow_to_event(make_flow(request(content=b"12345")), 5, INFO)
    assert (event["request"]["body"], event["request"]["body_truncated"]) == (b"12345", False)


def test_zero_limit_records_no_body_but_flags_it() -> None:
    event = flow_to_event(make_flow(request(content=b"abc")), 0, INFO)
    assert event["request"]["body"] == b""
    assert event["request"]["body_truncated"] is True
    assert event["request"]["body_length"] == 3
    empty = flow_to_event(make_flow(request(content=b"")), 0, INFO)
    assert empty["request"]["body_truncated"] is False


def test_streamed_body_is_truncated_with_unknown_length() -> None:
    # mitmproxy keeps no content for a streamed body (stream_large_bodies).
    resp = response(content=None)
    resp.stream = True
    event = flow_to_event(make_flow(request(), resp), 1024, INFO)
    message = event["response"]["message"]
    assert message["body"] == b""
    assert message["body_truncated"] is True
    assert message["body_length"] == UNKNOWN_LENGTH == -1
    assert roundtrip(event) == event


def streamed(message: http.Message, chunks: list[bytes], cap: int, budget: Any = None) -> None:
    """Stream `chunks` through a capture the way the recorder's hooks do (no content kept)."""
    message.data.content = None
    capture = BodyCapture(cap, budget or CaptureBudget())
    message.stream = capture
    for chunk in [*chunks, b""]:
        capture(chunk)


def test_streamed_bodies_come_from_their_capture() -> None:
    req = request(method=b"POST")
    streamed(req, [b"abc", b"def"], 100)
    resp = response(headers=[(b"Content-Type", b"text/event-stream")])
    streamed(resp, [b"data: %d\n\n" % i for i in range(20)], 32)
    resp.trailers = http.Headers([(b"grpc-status", b"0")])
    event = flow_to_event(make_flow(req, resp), 100, INFO)
    assert (event["request"]["body"], event["request"]["body_truncated"]) == (b"abcdef", False)
    assert event["request"]["body_length"] == 6
    message = event["response"]["message"]
    whole = b"".join(b"data: %d\n\n" % i for i in range(20))
    assert message["body"] == whole[:32]
    assert (message["body_truncated"], message["body_length"]) == (True, len(whole))
    assert message["trailers"] == [b"grpc-status", b"0"]
    assert roundtrip(event) == event


def test_a_streamed_body_that_broke_off_keeps_its_start_with_unknown_length() -> None:
    req = request(method=b"PUT")
    streamed(req, [b"0123456789"], 4)
    req.timestamp_end = None  # mitmproxy sets it only when the body ended
    event = flow_to_event(make_flow(req, err="client disconnected"), 100, INFO)
    assert event["request"]["body"] == b"0123"
    assert event["request"]["body_truncated"] is True
    assert event["request"]["body_length"] == UNKNOWN_LENGTH


def test_a_body_cut_by_the_budget_is_truncated_with_its_full_length() -> None:
    req = request(method=b"PUT")
    streamed(req, [b"x" * 10, b"y" * 10], 100, CaptureBudget(15))
    event = flow_to_event(make_flow(req), 100, INFO)
    assert event["request"]["body"] == b"x" * 10 + b"y" * 5
    assert (event["request"]["body_truncated"], event["request"]["body_length"]) == (True, 20)


def test_a_smaller_cap_than_the_capture_kept_cuts_further() -> None:
    # As the addon does when an event must shrink to fit a Kafka message.
    req = request(method=b"PUT")
    streamed(req, [b"abcdefgh"], 100)
    event = flow_to_event(make_flow(req), 3, INFO)
    assert event["request"]["body"] == b"abc"
    assert (event["request"]["body_truncated"], event["request"]["body_length"]) == (True, 8)


def test_captured_json_is_redacted_and_a_cut_one_is_dropped() -> None:
    redactor = Redactor.from_options(json_specs=["$.password"])
    json_headers = [(b"Content-Type", b"application/json")]
    body = b'{"user": "ann", "password": "hunter22"}'
    req = request(headers=json_headers, method=b"POST")
    streamed(req, [body[:10], body[10:]], 1024)
    event = flow_to_event(make_flow(req), 1024, INFO, redactor)
    assert event["request"]["body"] == b'{"user":"ann","password":"***"}'
    assert event["request"]["body_length"] == len(event["request"]["body"])
    assert event["recorder"]["redactions"] == ["request.body:$.password=mask"]
    # Over the cap, or cut by the budget: it cannot be parsed, so it is left out.
    for cap, budget in ((16, CaptureBudget()), (1024, CaptureBudget(16))):
        req = request(headers=json_headers, method=b"POST")
        streamed(req, [body], cap, budget)
        event = flow_to_event(make_flow(req), 1024, INFO, redactor)
        got = event["request"]
        assert (got["body"], got["body_truncated"], got["body_length"]) == (b"", True, len(body))
        assert event["recorder"]["redactions"] == ["request.body=drop"]


def test_content_encoding_is_not_decoded() -> None:
    raw = gzip.compress(b"hello " * 100)
    resp = response(content=raw, headers=[(b"Content-Encoding", b"gzip")])
    event = flow_to_event(make_flow(request(), resp), 1 << 20, INFO)
    assert event["response"]["message"]["body"] == raw
    assert event["response"]["message"]["body_length"] == len(raw)


def test_upstream_error_without_response() -> None:
    f = make_flow(err="Connection refused", connected=False)
    event = flow_to_event(f, 1024, INFO)
    assert event["response"] is None
    assert event["response_start_us"] is None and event["response_end_us"] is None
    assert event["error"] == "Connection refused"
    assert event["server"] is None
    assert roundtrip(event) == event


def test_request_cut_off_by_the_client() -> None:
    req = request(content=None)
    req.timestamp_end = None
    event = flow_to_event(make_flow(req, err="client disconnected"), 1024, INFO)
    assert event["request_end_us"] is None
    assert event["request"]["body_truncated"] is True
    assert event["request"]["body_length"] == -1
    assert roundtrip(event) == event


def test_tls_client_is_https_and_ipv6_addresses_work() -> None:
    f = make_flow(tls=True)
    f.client_conn.peername = ("::1", 40000, 0, 0)
    event = flow_to_event(f, 10, INFO)
    assert event["scheme"] == "https"
    assert event["client"] == {"host": "::1", "port": 40000}


def test_raw_path_and_odd_bytes_survive() -> None:
    req = request(
        path=b"/a%2Fb/\xff?x=%00",
        headers=[(b"Host", b"h\xc3\xa9.example"), (b"X-Bin", b"\x00\xff")],
        method=b"PURGE",
    )
    event = flow_to_event(make_flow(req), 10, INFO)
    assert event["path"] == b"/a%2Fb/\xff?x=%00"
    assert event["authority"] == "hé.example"
    assert event["request"]["headers"][3] == b"\x00\xff"
    assert event["method"] == "PURGE"
    assert roundtrip(event) == event


def test_works_on_mitmproxy_test_flows() -> None:
    f = tflow.tflow(resp=True)
    event = flow_to_event(f, 1 << 20, INFO)
    assert event["id"] == f.id
    assert event["request"]["body"] == b"content"
    assert roundtrip(event) == event


def test_conversion_does_not_touch_the_flow() -> None:
    f = make_flow(request(content=b"x" * 100), response())
    before = f.get_state()
    flow_to_event(f, 10, INFO)
    assert f.get_state() == before
