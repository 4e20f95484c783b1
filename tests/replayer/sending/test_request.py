"""Event → outgoing request: what is kept byte for byte, and what is rewritten."""

from __future__ import annotations

import pytest

from replayer.models import Skipped, Target, Unsendable
from replayer.sending.request import REPLAY_HEADER, build_request
from tests.replayer.events import make_event
from trafficmirror.plumbing.errors import ConfigError

TARGET = Target.parse("http://127.0.0.1:9000")


def test_target_keeps_scheme_host_and_non_default_port() -> None:
    assert Target.parse("http://127.0.0.1:9000").origin == "http://127.0.0.1:9000"
    assert Target.parse("https://shadow.internal/").host_port == "shadow.internal"
    assert Target.parse("http://shadow:80").host_port == "shadow"
    assert Target.parse("http://[::1]:81").host_port == "[::1]:81"


@pytest.mark.parametrize(
    "url", ["ftp://x", "http://", "http://h/prefix", "http://h/?q=1", "http://h:99999"]
)
def test_target_refuses_what_it_would_ignore_or_cannot_use(url: str) -> None:
    with pytest.raises(ConfigError):
        Target.parse(url)


def test_method_path_body_and_header_order_are_kept() -> None:
    event = make_event(
        method="POST",
        path="/api/orders?x=%41&tag=a&tag=b&q=caf%C3%A9",
        headers=[
            ("Host", "shop.example.com"),
            ("User-Agent", "tm/1"),
            ("Content-Type", "application/json"),
            ("Content-Length", "7"),
            ("X-Tag", "alpha"),
            ("x-tag", "beta"),
            ("X-Tag", "gamma, delta"),
        ],
        body=b'{"a":1}',
    )
    request = build_request(event, TARGET)
    assert request.method == "POST"
    assert request.path == "/api/orders?x=%41&tag=a&tag=b&q=caf%C3%A9"
    assert request.url == "http://127.0.0.1:9000/api/orders?x=%41&tag=a&tag=b&q=caf%C3%A9"
    assert request.body == b'{"a":1}'
    assert list(request.headers) == [
        ("Host", "127.0.0.1:9000"),
        ("User-Agent", "tm/1"),
        ("Content-Type", "application/json"),
        ("Content-Length", "7"),
        ("X-Tag", "alpha"),
        ("x-tag", "beta"),
        ("X-Tag", "gamma, delta"),
        (REPLAY_HEADER, event["id"]),
    ]


def test_hop_by_hop_headers_and_the_ones_connection_names_are_dropped() -> None:
    event = make_event(
        headers=[
            ("Host", "a"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic Zm9v"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("x-secret-hop", "1"),
            ("Authorization", "Bearer t"),
            ("Accept", "*/*"),
        ],
        body=b"hello",
    )
    names = [name for name, _ in build_request(event, TARGET).headers]
    assert names == ["Host", "Authorization", "Accept", REPLAY_HEADER]


def test_host_is_the_target_and_comes_first_even_if_recorded_later_or_twice() -> None:
    event = make_event(headers=[("Accept", "*/*"), ("host", "a.example"), ("Host", "b.example")])
    request = build_request(event, Target.parse("https://shadow.internal:8443"))
    assert request.headers[0] == ("Host", "shadow.internal:8443")
    assert [n for n, _ in request.headers].count("Host") == 1
    assert [n.lower() for n, _ in request.headers].count("host") == 1


def test_http2_recording_without_host_gets_one() -> None:
    event = make_event(headers=[(":authority", "x"), ("accept", "*/*")])
    request = build_request(event, TARGET)
    assert request.headers == (
        ("Host", "127.0.0.1:9000"),
        ("accept", "*/*"),
        (REPLAY_HEADER, event["id"]),
    )


def test_content_length_always_states_the_body_sent() -> None:
    event = make_event(
        method="PUT",
        headers=[("Content-Length", "999"), ("Content-Length", "999"), ("X", "y")],
        body=b"abc",
    )
    request = build_request(event, TARGET)
    assert [h for h in request.headers if h[0].lower() == "content-length"] == [
        ("Content-Length", "3")
    ]


def test_a_recorded_replay_marker_is_replaced_not_duplicated() -> None:
    event = make_event(headers=[(REPLAY_HEADER, "older"), ("A", "b")], exchange_id="new-id")
    request = build_request(event, TARGET)
    assert [v for n, v in request.headers if n == REPLAY_HEADER] == ["new-id"]
    assert request.header("x-trafficmirror-replay") == "new-id"


def test_truncated_bodies_are_skipped_not_sent_partially() -> None:
    event = make_event(method="POST", body=b"x" * 10, body_truncated=True, body_length=5000)
    with pytest.raises(Skipped) as caught:
        build_request(event, TARGET)
    assert caught.value.reason == "truncated"
    assert "5000 bytes" in str(caught.value)


def test_binary_body_and_non_utf8_header_values_survive() -> None:
    body = bytes(range(256))
    event = make_event(
        method="POST", headers=[(b"X-Raw", b"caf\xe9"), ("X-Utf", "caf\u00e9")], body=body
    )
    request = build_request(event, TARGET)
    assert request.body == body
    assert request.header("X-Raw") == "caf\u00e9"  # Latin-1 reading of a non-UTF-8 value
    assert request.header("X-Utf") == "caf\u00e9"


@pytest.mark.parametrize(
    ("recorded", "sent"),
    [
        (b"/a/../b?x=%41&y=a+b", "/a/../b?x=%41&y=a+b"),
        (b"http://shop.example.com/p?q=1", "/p?q=1"),
        (b"http://shop.example.com?q=1", "/?q=1"),
        (b"https://shop.example.com", "/"),
        (b"", "/"),
        (b"/caf\xc3\xa9 x", "/caf%C3%A9%20x"),
    ],
)
def test_paths_are_sent_raw_and_absolute_form_is_reduced(recorded: bytes, sent: str) -> None:
    assert build_request(make_event(path=recorded), TARGET).path == sent


def test_asterisk_form_is_skipped() -> None:
    with pytest.raises(Skipped) as caught:
        build_request(make_event(method="OPTIONS", path=b"*"), TARGET)
    assert caught.value.reason == "unsupported"


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (make_event(path=b"no-slash"), "is not a path"),
        (make_event(method="GE T"), "is not an HTTP token"),
        (make_event(method=""), "is not an HTTP token"),
        (make_event(headers=[("Bad Name", "x")]), "is not an HTTP token"),
        (make_event(headers=[("X-A", "a\r\nX-B: b")]), "CR, LF or NUL"),
        (make_event(headers=[("X-A", b"a\x00b")]), "CR, LF or NUL"),
        (make_event(authority="a" * 263), "263 bytes"),
        (make_event(authority="shop example"), "is not a host[:port]"),
        (make_event(authority="shop/evil"), "is not a host[:port]"),
        (make_event(exchange_id="id\nX-Evil: 1"), "cannot be a header value"),
    ],
)
def test_events_no_valid_request_can_be_made_of_are_unsendable(
    event: dict[str, object], why: str
) -> None:
    with pytest.raises(Unsendable) as caught:
        build_request(event, TARGET)
    assert why in str(caught.value)
    assert caught.value.reason == "unsendable"


def test_odd_but_valid_requests_are_not_unsendable() -> None:
    event = make_event(
        method="PROPFIND",
        authority="[2001:db8::1]:8443",
        headers=[(":authority", "x"), ("X-Latin", b"caf\xe9"), ("X-Tab", "a\tb")],
    )
    assert build_request(event, TARGET).method == "PROPFIND"
    assert build_request(make_event(authority="a" * 253 + ":65535"), TARGET)
