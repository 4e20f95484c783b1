"""Turn a finished mitmproxy `HTTPFlow` into an `HttpExchange` event (`schemas.records`).

The conversion runs on mitmproxy's event loop for every exchange, so it reads
the raw `Message.data` fields directly (no property decoding, no content
decoding) and builds the plain dicts, lists and bytes the codec writes as they
are. The event holds what was on the wire: raw header pairs flattened into
`[name0, value0, ...]` in their order with duplicates and case kept, bodies
after transfer decoding but before content decoding (a gzip body is replayed
as the same gzip bytes), cut at `max_body_bytes` (see `message` for truncated
and unknown lengths); a body the recorder streamed comes from the first bytes
its `recorder.capture.BodyCapture` kept. Secrets are redacted here, on the
event being built, when a `Redactor` is given (`recorder.redact`): headers,
query parameters, form fields and JSON values, before anything is encoded or
leaves the process.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, overload

from mitmproxy import http

from recorder.capture import BodyCapture
from recorder.redact import Redactor
from schemas.records import (
    KIND_HTTP,
    Address,
    HttpExchange,
    Message,
    RecordedResponse,
    RecorderInfo,
)

#: Recorded when a body's length is unknown (cut off by an error, or streamed uncaptured).
UNKNOWN_LENGTH = -1
#: `flow.metadata` key: a stopping recorder put `Connection: close` first in the
#: response headers (see `recorder.drain.close_after`); the event leaves it out.
ADDED_CONNECTION_CLOSE = "trafficmirror.added_connection_close"

_HOST = b"host"


@overload
def micros(timestamp: float) -> int: ...
@overload
def micros(timestamp: float | None) -> int | None: ...
def micros(timestamp: float | None) -> int | None:
    """Seconds since the epoch (mitmproxy's float timestamps) as integer microseconds."""
    if timestamp is None:
        return None
    return round(timestamp * 1_000_000)


def text(raw: bytes) -> str:
    """Bytes from the wire as an Avro string.

    Avro strings must be valid UTF-8; a method, version or Host value is ASCII in
    practice, and anything else is kept readable and unambiguous with backslash
    escapes rather than failing the whole event.
    """
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def flat(fields: tuple[tuple[bytes, bytes], ...]) -> list[bytes]:
    """`((n0, v0), (n1, v1))` → `[n0, v0, n1, v1]`, the schema's header layout."""
    return list(chain.from_iterable(fields))


def authority(request: http.Request) -> str:
    """The request's Host header, or `:authority` for HTTP/2 and HTTP/3; empty if absent.

    In reverse-proxy mode mitmproxy rewrites that header to the upstream before
    any addon sees the request, unless the `keep_host_header` option is set;
    `trafficmirror record` sets it, and the addon marks events recorded without
    it (see `recorder.addon`).
    """
    data = request.data
    if data.authority and data.http_version in (b"HTTP/2.0", b"HTTP/3"):
        return text(data.authority)
    for name, value in data.headers.fields:
        if name.lower() == _HOST:
            return text(value)
    return text(data.authority)


def message(
    msg: http.Message,
    max_body_bytes: int,
    redactor: Redactor | None = None,
    where: str = "request",
    notes: list[str] | None = None,
) -> Message:
    """The `Message` record of a request or response.

    The body comes from mitmproxy's content when it kept the body, else from
    the recorder's `BodyCapture` (`recorder.capture`) when the body was
    streamed through one. A body longer than `max_body_bytes`, or of which
    the capture kept less than passed, is cut: `body_truncated` is true and
    `body_length` is the original length. A body that broke off before its
    end, or that was streamed with no capture, is flagged truncated with
    `body_length` -1: its length is not known, and a replayer must not send
    it as if it were complete (what was kept of it is recorded).

    With a `redactor`, its rules are applied to the headers, trailers and body
    (the whole body when it is known, before it is cut; a cut one falls under
    the redactor's policy for bodies over the cap), and what was redacted is
    appended to `notes`.
    """
    data = msg.data
    raw = data.content
    cut = False
    if raw is not None:
        length = len(raw)
    else:
        capture = msg.stream
        if not isinstance(capture, BodyCapture):
            raw, length, cut = b"", UNKNOWN_LENGTH, True
        else:
            raw = capture.body()
            length = capture.length if data.timestamp_end is not None else UNKNOWN_LENGTH
            cut = len(raw) != length
    trailers = data.trailers
    if redactor is None or notes is None:
        headers = flat(data.headers.fields)
        trailer_list = flat(trailers.fields) if trailers is not None else None
    else:
        headers = redactor.redact_headers(data.headers.fields, where, notes)
        trailer_list = (
            redactor.redact_headers(trailers.fields, where, notes) if trailers is not None else None
        )
        # A cut body is handed over as longer than its cap: it cannot be
        # parsed, and the redactor's policy for such bodies applies.
        limit = len(raw) - 1 if cut else max_body_bytes
        redacted = redactor.redact_body(raw, headers, limit, where, notes)
        if redacted is None:  # dropped, fail closed: keep only its length
            return {
                "headers": headers,
                "body": b"",
                "body_truncated": True,
                "body_length": length,
                "trailers": trailer_list,
            }
        if redacted is not raw and not cut:
            length = len(redacted)
        raw = redacted
    truncated = cut or len(raw) > max_body_bytes
    body = raw[:max_body_bytes] if truncated else raw
    return {
        "headers": headers,
        "body": body,
        "body_truncated": truncated,
        "body_length": length,
        "trailers": trailer_list,
    }


def address(peername: tuple[Any, ...] | None) -> Address | None:
    """An `Address` record from a socket address (IPv6 tuples have 4 items)."""
    if not peername:
        return None
    return {"host": str(peername[0]), "port": int(peername[1])}


#: `RecorderInfo.capture` of a recorder in the request path (the response is production's).
CAPTURE_PROXY = "proxy"
#: `RecorderInfo.capture` of `record --mirror`: it answered itself, there is no production response.
CAPTURE_MIRROR = "mirror"


def recorder_info(
    recorder_id: str,
    sampling_rate: float = 1.0,
    redactions: list[str] | None = None,
    capture: str = CAPTURE_PROXY,
) -> RecorderInfo:
    """The `RecorderInfo` record; build it once and pass it to every `flow_to_event` call."""
    return {
        "recorder_id": recorder_id,
        "sampling_rate": sampling_rate,
        "redactions": list(redactions or []),
        "capture": capture,
    }


def flow_to_event(
    flow: http.HTTPFlow,
    max_body_bytes: int,
    recorder: RecorderInfo,
    redactor: Redactor | None = None,
) -> HttpExchange:
    """The `HttpExchange` event of `flow`, ready for `schemas.codec.Codec.encode`.

    `recorder` is a `recorder_info()` dict shared by all events (it is not
    copied unless a redaction was applied: then the event gets its own, with
    the redactions appended to `redactions`). With `capture` mirror the event
    has no response and no server: the flow's response is the mirror's own
    answer (`recorder.mirror`). The flow is only read, never changed.
    """
    notes: list[str] | None = [] if redactor is not None and redactor.active else None
    if notes is None:
        redactor = None
    req = flow.request
    rd = req.data
    path = rd.path
    if redactor is not None and notes is not None:
        path = redactor.redact_path(path, notes)  # the same bytes unless a rule matched
    request = message(req, max_body_bytes, redactor, "request", notes)
    # A mirror's flow carries the recorder's own answer, not production's.
    mirrored = recorder["capture"] == CAPTURE_MIRROR
    resp = None if mirrored else flow.response
    response: RecordedResponse | None = None
    response_start = response_end = None
    if resp is not None:
        sd = resp.data
        response = {
            "status": sd.status_code,
            "reason": sd.reason,
            "http_version": text(sd.http_version),
            "message": message(resp, max_body_bytes, redactor, "response", notes),
        }
        added = flow.metadata.get(ADDED_CONNECTION_CLOSE)
        if added and response["message"]["headers"][:2] == [b"connection", b"close"]:
            del response["message"]["headers"][:2]
        response_start = micros(sd.timestamp_start)
        response_end = micros(sd.timestamp_end)
    if notes:
        recorder = {**recorder, "redactions": [*recorder["redactions"], *notes]}
    client = flow.client_conn
    error = flow.error
    return {
        "id": flow.id,
        "request_start_us": micros(rd.timestamp_start),
        "request_end_us": micros(rd.timestamp_end),
        "response_start_us": response_start,
        "response_end_us": response_end,
        "client": address(client.peername) or {"host": "", "port": 0},
        "server": None if mirrored else address(flow.server_conn.peername),
        "scheme": "https" if client.tls else "http",
        "method": text(rd.method),
        "authority": authority(req),
        "path": path,
        "http_version": text(rd.http_version),
        "request": request,
        "response": response,
        "error": error.msg if error is not None else None,
        "recorder": recorder,
        "kind": KIND_HTTP,
        "websocket": None,
    }


def probe_event() -> HttpExchange:
    """A minimal valid event, encoded once at start to register the schema."""
    empty: Message = {
        "headers": [],
        "body": b"",
        "body_truncated": False,
        "body_length": 0,
        "trailers": None,
    }
    return {
        "id": "probe",
        "request_start_us": 0,
        "request_end_us": None,
        "response_start_us": None,
        "response_end_us": None,
        "client": {"host": "", "port": 0},
        "server": None,
        "scheme": "http",
        "method": "GET",
        "authority": "",
        "path": b"/",
        "http_version": "HTTP/1.1",
        "request": empty,
        "response": None,
        "error": None,
        "recorder": recorder_info("probe"),
        "kind": KIND_HTTP,
        "websocket": None,
    }
