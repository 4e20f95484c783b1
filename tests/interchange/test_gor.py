"""GoReplay files: the exact payload format, round trips, malformed input."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from interchange import gor
from interchange.exchange import MalformedFile
from tests.interchange.events import BASE_US, event, sample

SEP = "\n🐵🙈🙉\n".encode()


def test_payload_layout_is_goreplays() -> None:
    out = io.BytesIO()
    gor.write([event(0)], out)
    request, response, rest = out.getvalue().split(SEP)
    assert rest == b""
    assert request.split(b"\n", 1)[0] == b"1 ex-0 %d 150000" % (BASE_US * 1000)
    assert request.split(b"\n", 1)[1] == (
        b"GET /items?id=1&q= HTTP/1.1\r\nHost: shop.test:8080\r\nX-Tag: a\r\n\r\n"
    )
    assert response.startswith(b"2 ex-0 %d 250000\nHTTP/1.1 200 OK\r\n" % ((BASE_US + 2150) * 1000))
    assert response.endswith(b'\r\n\r\n{"ok": true}')


def test_round_trip_keeps_method_path_headers_and_bodies(tmp_path: Path) -> None:
    events = [e for e in sample() if e["path"] != b"/mirror"]
    path = tmp_path / "t.gor"
    with path.open("wb") as fh:
        gor.write(events, fh)
    back = gor.read(str(path))
    assert [e["id"] for e in back] == [e["id"] for e in events]
    for before, after in zip(events, back, strict=True):
        for key in (
            "method",
            "path",
            "request",
            "response",
            "request_start_us",
            "request_end_us",
            "response_start_us",
            "response_end_us",
            "authority",
        ):
            assert after[key] == before[key], key
        assert after["recorder"]["recorder_id"] == "import:gor:t.gor"


def test_requests_without_responses_and_gzip(tmp_path: Path) -> None:
    data = (
        b"1 a1 1000000 -1\nGET /only HTTP/1.1\r\nHost: x\r\n\r\n"
        + SEP
        + b"3 a1 2000000 10\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
        + SEP
    )
    path = tmp_path / "requests.gor.gz"
    path.write_bytes(gzip.compress(data))
    (ev,) = gor.read(str(path))
    assert ev["response"] is None and ev["recorder"]["capture"] == "mirror"
    assert ev["request_start_us"] == 1000 and ev["request_end_us"] is None
    assert ev["authority"] == "x"


def test_chunked_messages_are_decoded_and_written_chunked_again() -> None:
    raw = (
        b"1 c 5000 0\nPOST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n" + SEP
    )
    (ev,) = gor.read("c.gor", raw)
    assert ev["request"]["body"] == b"abcde"
    assert ev["request"]["trailers"] == [b"X-Sum", b"5"]
    (payload,) = gor.payloads(ev)
    assert payload.endswith(b"\r\n\r\n5\r\nabcde\r\n0\r\nX-Sum: 5\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n" + SEP, "payload 1 (line 1): expected '<1|2|3> <id>"),
        (
            b"1 a 1 0\nGET / HTTP/1.1\r\n\r\n" + SEP + b"1 b x 0\nGET / HTTP/1.1\r\n\r\n" + SEP,
            "payload 2 (line 6): timestamp or latency is not an integer",
        ),
        (b"1 a 1 0\nGET / HTTP/1.1\r\nHost x\r\n\r\n" + SEP, "payload 1 (line 1): bad header"),
        (b"1 a 1 0\nhello\r\n\r\n" + SEP, "payload 1 (line 1): bad start line"),
        (b"2 a 1 0\nGET / HTTP/1.1\r\n\r\n" + SEP, "not an HTTP/1.x status line"),
        (b"1 a 1 0\nGET / HTTP/1.1\r\nContent-Length: x\r\n\r\n" + SEP, "bad Content-Length"),
        (
            b"1 a 1 0\nGET / HTTP/1.1\r\n\r\n" + SEP + b"1 a 2 0\nGET / HTTP/1.1\r\n\r\n" + SEP,
            "a second request with id 'a'",
        ),
    ],
)
def test_malformed_files_name_the_payload_and_line(data: bytes, message: str) -> None:
    with pytest.raises(MalformedFile) as caught:
        gor.read("bad.gor", data)
    assert message in str(caught.value)
    assert str(caught.value).startswith("bad.gor: ")
