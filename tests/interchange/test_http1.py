"""HTTP/1.x framing rebuilt from events: every message parses back to what the event holds."""

from __future__ import annotations

from interchange import http1
from tests.interchange.events import event


def test_a_cut_body_gets_a_matching_content_length() -> None:
    ev = event(0, method="POST", body=b"x" * 10)
    ev["request"]["body_truncated"] = True
    ev["request"]["body_length"] = 5000
    ev["request"]["headers"][-1] = b"5000"
    raw = http1.request_bytes(ev)
    assert b"Content-Length: 10\r\n" in raw and raw.endswith(b"\r\n\r\n" + b"x" * 10)


def test_http2_becomes_http11_with_host_and_length() -> None:
    ev = event(
        0, version="HTTP/2.0", headers=[b"accept", b"*/*"], response_headers=[], response_body=b"hi"
    )
    request = http1.request_bytes(ev)
    assert request == b"GET /items?id=1&q= HTTP/1.1\r\nHost: shop.test:8080\r\naccept: */*\r\n\r\n"
    response = http1.response_bytes(ev)
    assert response == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    parsed = http1.parse(response)
    assert parsed.start == (b"HTTP/1.1", b"200", b"OK") and parsed.body == b"hi"


def test_head_and_304_keep_their_content_length() -> None:
    ev = event(0, method="HEAD", response_body=b"", response_headers=[b"Content-Length", b"1234"])
    assert http1.response_bytes(ev) == b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"


def test_no_response_means_none() -> None:
    assert http1.response_bytes(event(0, status=None)) is None
