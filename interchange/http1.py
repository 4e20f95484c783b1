"""HTTP/1.x messages rebuilt from events, and parsed back into event parts.

`request_bytes`/`response_bytes` write what a client and server would have put
on a TCP connection for one exchange: the start line, the recorded headers in
their order and case, and the body framed so any HTTP parser finds its end.
The event holds bodies after transfer decoding, so a `chunked` message is
chunked again (one chunk, then the trailers); otherwise Content-Length must
match the bytes written: it is corrected when the recorded body was cut at the
recorder's size limit, and added when missing (an HTTP/2 message has none
needed). HTTP/2 and HTTP/3 exchanges are written as HTTP/1.1, with a Host header
from the authority; their trailers are dropped (HTTP/1.1 trailers need
chunking). `parse` reads one message back (GoReplay stores them raw).
"""

from __future__ import annotations

from dataclasses import dataclass

from interchange.exchange import header, pairs
from schemas.records import HttpExchange, Message

_CRLF = b"\r\n"
_TE = b"transfer-encoding"
_CL = b"content-length"
#: Statuses whose responses never have a body (RFC 9112 6.3).
_NO_BODY = frozenset({204, 304})


def version(recorded: str) -> bytes:
    """The HTTP/1.x version to write: the recorded one, or HTTP/1.1 for 2 and 3."""
    return recorded.encode() if recorded in ("HTTP/1.0", "HTTP/1.1") else b"HTTP/1.1"


def _chunked(headers: list[bytes]) -> bool:
    value = header(headers, _TE)
    return value is not None and value.lower().rstrip().endswith(b"chunked")


def _frame(msg: Message, head: list[bytes], body_allowed: bool) -> bytes:
    """Headers and body of one message, framed; `head` holds the start line."""
    headers = list(msg["headers"])
    body = msg["body"]
    chunked = _chunked(headers)
    if chunked:
        out = bytearray()
        if body:
            out += b"%x\r\n" % len(body) + body + _CRLF
        out += b"0\r\n"
        for name, value in pairs(msg["trailers"]):
            out += name + b": " + value + _CRLF
        payload = bytes(out + _CRLF)
    else:
        payload = body
        length = str(len(body)).encode()
        found = False
        for i in range(0, len(headers) - 1, 2):
            if headers[i].lower() == _CL:
                found = True
                # A HEAD's or 304's Content-Length describes a body never sent.
                if body or body_allowed:
                    headers[i + 1] = length
        if not found and body_allowed:
            headers += [b"Content-Length", length]
    lines = head + [name + b": " + value for name, value in pairs(headers)]
    return _CRLF.join(lines) + _CRLF + _CRLF + payload


def request_bytes(event: HttpExchange) -> bytes:
    """The request of `event` as HTTP/1.x bytes."""
    start = b"%s %s %s" % (
        event["method"].encode(),
        event["path"] or b"/",
        version(event["http_version"]),
    )
    msg = event["request"]
    if header(msg["headers"], b"host") is None and event["authority"]:
        msg = {**msg, "headers": [b"Host", event["authority"].encode(), *msg["headers"]]}
    # A request without Content-Length or chunking has no body: add one only when needed.
    return _frame(msg, [start], msg["body"] != b"" or header(msg["headers"], _CL) is not None)


def response_bytes(event: HttpExchange) -> bytes | None:
    """The response of `event` as HTTP/1.x bytes, or None when it has none."""
    resp = event["response"]
    if resp is None:
        return None
    status = resp["status"]
    start = b"%s %d %s" % (version(resp["http_version"]), status, resp["reason"])
    allowed = event["method"] != "HEAD" and status not in _NO_BODY and status >= 200
    return _frame(resp["message"], [start.rstrip()], allowed)


@dataclass(frozen=True)
class Parsed:
    """One HTTP/1.x message: the three start-line parts, headers, body and trailers.

    `length` is the body's declared length when the bytes end before it (a
    capture cut short), else the length of `body`.
    """

    start: tuple[bytes, bytes, bytes]
    headers: list[bytes]
    body: bytes
    trailers: list[bytes] | None
    length: int


def parse(raw: bytes) -> Parsed:
    """Parse one HTTP/1.x request or response; raises ValueError saying what is wrong."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = raw.partition(b"\n\n")
        if not sep:
            raise ValueError("no blank line after the headers")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0]:
        raise ValueError(f"bad start line {lines[0][:80]!r}")
    start = (parts[0], parts[1], parts[2] if len(parts) == 3 else b"")
    headers: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise ValueError(f"bad header line {line[:80]!r}")
        headers += [name.strip(), value.strip()]
    if _chunked(headers):
        body, trailers = _dechunk(rest)
        return Parsed(start, headers, body, trailers, len(body))
    declared = header(headers, _CL)
    length = len(rest)
    if declared is not None:
        if not declared.strip().isdigit():
            raise ValueError(f"bad Content-Length {declared[:40]!r}")
        length = int(declared)
        rest = rest[:length]
    return Parsed(start, headers, rest, None, max(length, len(rest)))


def _dechunk(data: bytes) -> tuple[bytes, list[bytes] | None]:
    body = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise ValueError("chunked body ends inside a chunk size line")
        size_text = data[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError(f"bad chunk size {size_text[:20]!r}") from None
        pos = end + 2
        if size == 0:
            break
        if pos + size > len(data):
            raise ValueError("chunked body ends inside a chunk")
        body += data[pos : pos + size]
        pos += size + 2
    trailers: list[bytes] = []
    for line in data[pos:].split(b"\r\n"):
        if not line:
            break
        name, _, value = line.partition(b":")
        trailers += [name.strip(), value.strip()]
    return bytes(body), trailers or None
