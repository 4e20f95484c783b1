"""HTTP Archive (HAR 1.2) files: events to entries and back.

Export writes one entry per event in recorded order, as browser devtools
expect: an absolute URL, headers in order, query and cookies parsed, bodies as
text (base64 with `encoding` when not UTF-8), content decoded when it was
content-encoded (the spec says `content.text` is decoded; the header stays),
timings from the recorded timestamps, `connection` = the client address, and
`_id`, `_error` as custom fields. An exchange without a response gets status 0,
as browsers write failed requests. Import reads any HAR 1.2 (browsers, proxies,
this export), checks every entry before returning, and drops HTTP/2
pseudo-headers (`:path` ...), which are not headers to replay.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from interchange.exchange import (
    MalformedFile,
    header,
    iso_time,
    message,
    origin,
    pairs,
    parse_iso_us,
    response,
    split_authority,
)
from schemas.records import KIND_HTTP, Address, HttpExchange, Message, RecordedResponse

#: An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Content-Encoding values `content.text` is decoded from and encoded back to.
_CODINGS = frozenset({"gzip", "deflate", "br", "zstd"})


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _headers(flat: list[bytes]) -> list[dict[str, str]]:
    return [{"name": _text(n), "value": _text(v)} for n, v in pairs(flat)]


def _body(raw: bytes) -> dict[str, str]:
    try:
        return {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"text": base64.b64encode(raw).decode("ascii"), "encoding": "base64"}


def _coding(flat: list[bytes]) -> str | None:
    value = header(flat, b"content-encoding")
    coding = value.decode("latin-1").strip().lower() if value else ""
    return coding if coding in _CODINGS else None


def _ms(start: int | None, end: int | None) -> float:
    if start is None or end is None:
        return -1
    return round(max(0, end - start) / 1000, 3)


def _cookies(flat: list[bytes], name: bytes) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for key, value in pairs(flat):
        if key.lower() == name:
            out += _jar(_text(value))
    return out


def _jar(text: str) -> list[dict[str, str]]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(text)
    except CookieError:  # devtools cannot parse it either: just not listed
        return []
    return [{"name": k, "value": m.value} for k, m in jar.items()]


def _mime(msg: Message) -> str:
    value = header(msg["headers"], b"content-type")
    return _text(value) if value is not None else ""


def _host_port(address: Address | None) -> str:
    """`host:port` (`[v6]:port`) of the server, or a name that says it is not known."""
    if address is None or not address["host"]:
        return "unknown.invalid"
    host = address["host"]
    return f"[{host}]:{address['port']}" if ":" in host else f"{host}:{address['port']}"


def entry(event: HttpExchange) -> dict[str, Any]:
    """The HAR entry of one event."""
    req = event["request"]
    path = _text(event["path"])
    authority = event["authority"] or _host_port(event["server"])
    request: dict[str, Any] = {
        "method": event["method"],
        "url": f"{event['scheme']}://{authority}{path}",
        "httpVersion": event["http_version"],
        "cookies": _cookies(req["headers"], b"cookie"),
        "headers": _headers(req["headers"]),
        "queryString": [
            {"name": k, "value": v}
            for k, v in parse_qsl(urlsplit(path).query, keep_blank_values=True)
        ],
        "headersSize": -1,
        "bodySize": req["body_length"],
    }
    if req["body"]:
        request["postData"] = {"mimeType": _mime(req), **_body(req["body"])}
    send = _ms(event["request_start_us"], event["request_end_us"])
    wait = _ms(event["request_end_us"], event["response_start_us"])
    receive = _ms(event["response_start_us"], event["response_end_us"])
    out: dict[str, Any] = {
        "startedDateTime": iso_time(event["request_start_us"]),
        "time": round(sum(t for t in (send, wait, receive) if t > 0), 3),
        "request": request,
        "response": _response(event["response"], event["error"]),
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": send,
            "wait": wait,
            "receive": receive,
        },
        "_id": event["id"],
    }
    if event["server"] is not None and event["server"]["host"]:
        out["serverIPAddress"] = event["server"]["host"]
    if event["client"]["host"]:
        out["connection"] = f"{event['client']['host']}:{event['client']['port']}"
    if event["error"] is not None:
        out["_error"] = event["error"]
    return out


def _response(resp: RecordedResponse | None, error: str | None) -> dict[str, Any]:
    if resp is None:
        return {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": error or "no response",
        }
    msg = resp["message"]
    body = msg["body"]
    coding = _coding(msg["headers"])
    if coding is not None and body and not msg["body_truncated"]:
        try:
            body = _decode(body, coding)
        except ValueError:
            coding = None  # not what the header says: kept as recorded
    content: dict[str, Any] = {"size": msg["body_length"], "mimeType": _mime(msg), **_body(body)}
    if coding is not None and body is not msg["body"]:
        content["size"] = len(body)
        content["compression"] = len(body) - len(msg["body"])
    location = header(msg["headers"], b"location")
    return {
        "status": resp["status"],
        "statusText": _text(resp["reason"]),
        "httpVersion": resp["http_version"],
        "cookies": _cookies(msg["headers"], b"set-cookie"),
        "headers": _headers(msg["headers"]),
        "content": content,
        "redirectURL": _text(location) if location is not None else "",
        "headersSize": -1,
        "bodySize": msg["body_length"],
    }


def write(events: Iterable[HttpExchange], out: IO[str], version: str) -> int:
    """Write a HAR 1.2 log of `events` to `out`, one entry at a time; returns the count."""
    creator = json.dumps({"name": "trafficmirror", "version": version})
    out.write('{"log": {"version": "1.2", "creator": ' + creator + ', "entries": [\n')
    count = 0
    for event in events:
        out.write((",\n" if count else "") + json.dumps(entry(event), ensure_ascii=False))
        count += 1
    out.write("\n]}}\n")
    return count


# -- import ---------------------------------------------------------------------------


def _decode(raw: bytes, coding: str) -> bytes:
    from mitmproxy.net import encoding

    try:
        decoded = encoding.decode(raw, coding)
    except Exception as exc:  # noqa: BLE001 - any codec failure means "not encoded"
        raise ValueError(str(exc)) from None
    if not isinstance(decoded, bytes):
        raise ValueError(f"cannot decode {coding}")
    return decoded


def _encode(raw: bytes, coding: str) -> bytes:
    from mitmproxy.net import encoding

    encoded = encoding.encode(raw, coding)
    if not isinstance(encoded, bytes):
        raise ValueError(f"cannot encode {coding}")
    return encoded


class _Entry:
    """Typed access to one entry's JSON; every failure names the entry and the field."""

    def __init__(self, where: str, data: Any) -> None:
        self.where = where
        self.data = data

    def fail(self, what: str) -> MalformedFile:
        return MalformedFile(f"{self.where}: {what}")

    def get(self, path: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        value: Any = self.data
        for key in path.split("."):
            if not isinstance(value, Mapping):
                raise self.fail(f"{path}: not an object")
            if key not in value:
                if default is not ...:
                    return default
                raise self.fail(f"{path} is missing")
            value = value[key]
        if not isinstance(value, kind) or isinstance(value, bool):  # JSON true is no number
            raise self.fail(f"{path} is not {_kind(kind)}")
        return value

    def headers(self, path: str) -> list[bytes]:
        flat: list[bytes] = []
        for i, item in enumerate(self.get(path, list)):
            if not isinstance(item, Mapping):
                raise self.fail(f"{path}[{i}] is not an object")
            name, value = item.get("name"), item.get("value")
            if not isinstance(name, str) or not isinstance(value, str):
                raise self.fail(f"{path}[{i}]: name and value must be strings")
            if name.startswith(":"):
                continue  # an HTTP/2 pseudo-header, not a header to send
            if not _TOKEN.fullmatch(name):
                raise self.fail(f"{path}[{i}]: {name[:40]!r} is not a header name")
            if "\r" in value or "\n" in value:
                raise self.fail(f"{path}[{i}]: the value of {name[:40]!r} holds a line break")
            flat += [name.encode("utf-8"), value.encode("utf-8")]
        return flat

    def body(self, path: str) -> bytes:
        text: str | None = self.get(f"{path}.text", str, None)
        if text is None:
            return b""
        if self.get(f"{path}.encoding", str, None) == "base64":
            try:
                return base64.b64decode(text, validate=True)
            except binascii.Error:
                raise self.fail(f"{path}.text is not valid base64") from None
        return text.encode("utf-8")


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _version(text: str) -> str:
    low = text.strip().lower()
    if low in ("h2", "http/2", "http/2.0"):
        return "HTTP/2.0"
    if low in ("h3", "http/3", "http/3.0"):
        return "HTTP/3"
    return text.strip().upper() if low.startswith("http/1") else "HTTP/1.1"


def _address(text: str) -> Address | None:
    host, _, port = text.rpartition(":")
    if host and port.isdigit():
        return {"host": host.strip("[]"), "port": int(port)}
    return None


def read(path: str, data: bytes | None = None) -> list[HttpExchange]:
    """Every entry of the HAR file `path` as an event; raises `MalformedFile` naming the entry."""
    if data is None:
        with open(path, "rb") as fh:
            data = fh.read()
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedFile(f"{path}: not JSON: {exc}") from None
    entries = _Entry(path, document).get("log.entries", list)
    return [_event(path, i, _Entry(f"{path}: entry {i}", e)) for i, e in enumerate(entries)]


def _event(path: str, index: int, e: _Entry) -> HttpExchange:
    if not isinstance(e.data, Mapping):
        raise e.fail("not an object")
    try:
        start = parse_iso_us(e.get("startedDateTime", str))
    except ValueError:
        raise e.fail("startedDateTime is not an ISO 8601 time") from None
    method = e.get("request.method", str)
    url = urlsplit(e.get("request.url", str))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise e.fail(
            f"request.url {e.data['request']['url'][:80]!r} is not an absolute http(s) URL"
        )
    target = url.path or "/"
    if url.query:
        target += "?" + url.query
    req_headers = e.headers("request.headers")
    req_body = e.body("request.postData")
    size = e.get("request.bodySize", (int, float), -1)
    status = e.get("response.status", int)
    resp: RecordedResponse | None = None
    if status > 0:
        headers = e.headers("response.headers")
        body = e.body("response.content")
        coding = _coding(headers)
        if coding is not None and body:
            try:
                _decode(body, coding)
            except ValueError:  # devtools store the decoded text
                try:
                    body = _encode(body, coding)
                except ValueError as exc:
                    raise e.fail(f"response.content: cannot {coding}-encode it: {exc}") from None
        length = e.get("response.bodySize", (int, float), -1)
        resp = response(
            status,
            e.get("response.statusText", str).encode("utf-8"),
            _version(e.get("response.httpVersion", str)),
            message(
                headers, body, None, int(length) if length > len(body) and not coding else None
            ),
        )
    timings = {
        k: max(0.0, e.get(f"timings.{k}", (int, float), 0)) for k in ("send", "wait", "receive")
    }
    request_end = start + round(timings["send"] * 1000)
    response_start = request_end + round(timings["wait"] * 1000)
    ident = e.get("_id", str, None) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path}#{index}"))
    server_ip = e.get("serverIPAddress", str, "")
    port = split_authority(url.netloc, 443 if url.scheme == "https" else 80)["port"]
    error = e.get("_error", str, None) or (
        e.get("response._error", str, None) if resp is None else None
    )
    return {
        "id": ident,
        "request_start_us": start,
        "request_end_us": request_end,
        "response_start_us": response_start if resp is not None else None,
        "response_end_us": response_start + round(timings["receive"] * 1000) if resp else None,
        "client": _address(e.get("connection", str, "")) or {"host": "", "port": 0},
        "server": {"host": server_ip.strip("[]"), "port": port} if server_ip else None,
        "scheme": url.scheme,
        "method": method,
        "authority": url.netloc,
        "path": target.encode("utf-8"),
        "http_version": _version(e.get("request.httpVersion", str)),
        "request": message(
            req_headers, req_body, None, int(size) if size > len(req_body) else None
        ),
        "response": resp,
        "error": error if resp is None else None,
        "recorder": origin("har", path, resp is not None),
        "kind": KIND_HTTP,
        "websocket": None,
    }
