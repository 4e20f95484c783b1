"""GoReplay's `.gor` files: events to payloads and back.

The format, from GoReplay's source (`protocol.go`, `output_file.go`,
`input_file.go`): a sequence of payloads, each a meta line
`<type> <id> <timestamp ns> <latency ns>\\n` followed by the raw HTTP/1.x
message, and each followed by the separator `\\n🐵🙈🙉\\n`. Type 1 is a
request, 2 production's response to the request with the same id, 3 a response
GoReplay got when it replayed (ignored on import). The request's timestamp is
when it started; its latency, how long it took to arrive (-1 unknown).
Exports write HTTP/2 exchanges as HTTP/1.1 (`interchange.http1`). A `.gz`
file name means gzip, as in GoReplay.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from interchange import http1
from interchange.exchange import MalformedFile, header, message, origin, response
from schemas.records import KIND_HTTP, HttpExchange, RecordedResponse

logger = logging.getLogger(__name__)

SEPARATOR = "\n🐵🙈🙉\n".encode()
REQUEST, RESPONSE, REPLAYED = b"1", b"2", b"3"


def _latency_ns(start_us: int | None, end_us: int | None) -> int:
    if start_us is None or end_us is None:
        return -1
    return (end_us - start_us) * 1000


def payloads(event: HttpExchange) -> list[bytes]:
    """The request payload of `event` and, when it has one, its response payload."""
    ident = event["id"].replace(" ", "_").encode()
    start = event["request_start_us"]
    meta = b"1 %s %d %d\n" % (ident, start * 1000, _latency_ns(start, event["request_end_us"]))
    out = [meta + http1.request_bytes(event)]
    raw = http1.response_bytes(event)
    if raw is not None:
        r_start = event["response_start_us"] or event["request_end_us"] or start
        latency = _latency_ns(r_start, event["response_end_us"])
        out.append(b"2 %s %d %d\n" % (ident, r_start * 1000, latency) + raw)
    return out


def write(events: Iterable[HttpExchange], out: IO[bytes]) -> int:
    """Write every event as GoReplay payloads; returns the number of exchanges."""
    count = 0
    for event in events:
        for payload in payloads(event):
            out.write(payload + SEPARATOR)
        count += 1
    return count


@dataclass
class _Pending:
    number: int
    request: bytes | None = None
    request_ts: int = 0
    request_latency: int = -1
    response: bytes | None = None
    response_ts: int = 0
    response_latency: int = -1
    ids: list[int] = field(default_factory=list)


def _split(data: bytes, path: str) -> Iterator[tuple[int, int, bytes]]:
    """(payload number, line number, payload) of every payload in `data`."""
    pos, line, number = 0, 1, 0
    while pos < len(data):
        end = data.find(SEPARATOR, pos)
        chunk = data[pos:] if end < 0 else data[pos:end]
        number += 1
        if end < 0 and not chunk.strip():
            return  # trailing newline(s)
        yield number, line, chunk
        line += chunk.count(b"\n") + 2
        pos = len(data) if end < 0 else end + len(SEPARATOR)


def read(path: str, data: bytes | None = None) -> list[HttpExchange]:
    """Every exchange of the GoReplay file `path` as events; raises `MalformedFile`.

    A request and the response with its id become one event; a request without
    a response becomes an event without one (capture `mirror`); replayed
    responses (type 3) and responses without a request are skipped and logged.
    """
    if data is None:
        with open(path, "rb") as fh:
            data = fh.read()
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise MalformedFile(f"{path}: not a gzip file: {exc}") from None
    found: dict[bytes, _Pending] = {}
    skipped = 0
    for number, line, chunk in _split(data, path):
        where = f"{path}: payload {number} (line {line})"
        meta, nl, raw = chunk.partition(b"\n")
        fields = meta.split(b" ")
        if not nl or len(fields) < 3 or fields[0] not in (REQUEST, RESPONSE, REPLAYED):
            raise MalformedFile(f"{where}: expected '<1|2|3> <id> <timestamp> [<latency>]'")
        try:
            stamp = int(fields[2])
            latency = int(fields[3]) if len(fields) > 3 else -1
        except ValueError:
            raise MalformedFile(f"{where}: timestamp or latency is not an integer") from None
        try:
            start = http1.parse(raw).start
        except ValueError as exc:
            raise MalformedFile(f"{where}: {exc}") from None
        if fields[0] == REQUEST and not start[2].startswith(b"HTTP/"):
            raise MalformedFile(f"{where}: not an HTTP/1.x request line")
        if fields[0] != REQUEST and not (start[0].startswith(b"HTTP/") and start[1].isdigit()):
            raise MalformedFile(f"{where}: not an HTTP/1.x status line")
        if fields[0] == REPLAYED:
            skipped += 1
            continue
        pending = found.setdefault(fields[1], _Pending(number))
        if fields[0] == REQUEST:
            if pending.request is not None:
                raise MalformedFile(f"{where}: a second request with id {fields[1].decode()!r}")
            pending.request, pending.request_ts, pending.request_latency = raw, stamp, latency
        else:
            pending.response, pending.response_ts, pending.response_latency = raw, stamp, latency
    events = []
    for ident, pending in found.items():
        if pending.request is None:
            skipped += 1
            continue
        events.append(_event(path, ident.decode("utf-8", "replace"), pending.request, pending))
    if skipped:
        logger.info("%s: skipped %d payloads (replayed responses, orphan responses)", path, skipped)
    return events


def _us(ns: int) -> int:
    return ns // 1000


def _end(ts: int, latency: int) -> int | None:
    return _us(ts + latency) if latency >= 0 else None


def _event(path: str, ident: str, raw: bytes, pending: _Pending) -> HttpExchange:
    req = http1.parse(raw)
    method, target, ver = req.start
    resp: RecordedResponse | None = None
    if pending.response is not None:
        parsed = http1.parse(pending.response)
        ver_r, code, reason = parsed.start
        resp = response(
            int(code),
            reason,
            ver_r.decode("latin-1"),
            message(parsed.headers, parsed.body, parsed.trailers, parsed.length),
        )
    host = header(req.headers, b"host")
    return {
        "id": ident,
        "request_start_us": _us(pending.request_ts),
        "request_end_us": _end(pending.request_ts, pending.request_latency),
        "response_start_us": _us(pending.response_ts) if resp is not None else None,
        "response_end_us": _end(pending.response_ts, pending.response_latency)
        if resp is not None
        else None,
        "client": {"host": "", "port": 0},
        "server": None,
        "scheme": "http",
        "method": method.decode("latin-1"),
        "authority": host.decode("latin-1") if host is not None else "",
        "path": target,
        "http_version": ver.decode("latin-1") or "HTTP/1.1",
        "request": message(req.headers, req.body, req.trailers, req.length),
        "response": resp,
        "error": None,
        "recorder": origin("gor", path, resp is not None),
        "kind": KIND_HTTP,
        "websocket": None,
    }
