"""mitmproxy filter expressions (`~m POST & ~u /api`) over recorded events.

The replayer speaks the same filter language as the recorder (and mitmproxy's
`--view-filter`): an expression is parsed by `mitmproxy.flowfilter` and matched
against an `HTTPFlow` rebuilt from the event, so every operator (`~m`, `~u`,
`~d`, `~h`, `~b`, `~c`, `~t`, `~e`, `~s`, `~src`, `~dst` ...) means what it
means in mitmproxy. The rebuilt flow holds what the event holds: bodies as
recorded (cut when the recorder truncated them), the request target's host and
port from the upstream the recorder forwarded to, the Host header the client
sent. Importing this module loads mitmproxy, which takes a while, so the
replayer imports it only when a filter is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from mitmproxy import connection, flowfilter, http
from mitmproxy.flow import Error

from schemas.records import HttpExchange
from trafficmirror.plumbing.errors import ConfigError


def parse_filter(expr: str) -> Callable[[http.HTTPFlow], bool]:
    """The compiled mitmproxy filter; raises `ConfigError` (one line) when it is not one."""
    if not expr.strip():
        raise ConfigError("an empty filter expression matches nothing useful: give one")
    try:
        matcher = flowfilter.parse(expr)
    except ValueError:
        raise ConfigError(
            f"{expr!r} is not a mitmproxy filter expression (e.g. '~m POST & ~u /api'; "
            "see mitmproxy's filter expressions)"
        ) from None
    return matcher


def compile_filter(expr: str) -> Callable[[HttpExchange], bool]:
    """A predicate over decoded events that is True where `expr` matches.

    `~u` sees the URL made of the event's scheme, recorded Host, path and query;
    `~src`/`~dst` the client's and the upstream's addresses.

    The predicate fills one reused flow per call (building mitmproxy objects
    anew costs several times decoding the event, in their type checks), so it
    must not be called from several threads at once; the replayer calls it
    from its event loop only.
    """
    matcher = parse_filter(expr)
    scratch = _Scratch()

    def matches(event: HttpExchange) -> bool:
        return bool(matcher(scratch.fill(event)))

    return matches


def _pairs(flat: list[bytes] | None) -> tuple[tuple[bytes, bytes], ...]:
    if not flat:
        return ()
    return tuple(zip(flat[0::2], flat[1::2], strict=False))


def _seconds(micros: int | None) -> float | None:
    return None if micros is None else micros / 1_000_000


class _Parts(NamedTuple):
    """What a flow needs of an event, in mitmproxy's types."""

    request_line: tuple[str, int, bytes, bytes, bytes, bytes, bytes]
    request_headers: tuple[tuple[bytes, bytes], ...]
    request_body: bytes
    request_trailers: tuple[tuple[bytes, bytes], ...]
    request_times: tuple[float, float | None]
    client: tuple[str, int]
    tls: bool
    upstream: tuple[str, int] | None
    # http_version, status, reason, headers, body, trailers, start, end
    response: tuple[Any, ...] | None
    error: str | None


def _parts(event: HttpExchange) -> _Parts:
    client = event["client"]
    server = event["server"]
    upstream = (server["host"], server["port"]) if server else None
    authority = event["authority"]
    version = event["http_version"]
    if upstream is not None:
        host, port = upstream
    else:
        name, _, port_text = authority.rpartition(":")
        host = name if port_text.isdigit() else authority
        default = 443 if event["scheme"] == "https" else 80
        port = int(port_text) if port_text.isdigit() else default
    request = event["request"]
    response = event["response"]
    answered = None
    if response is not None:
        message = response["message"]
        answered = (
            response["http_version"].encode(),
            response["status"],
            response["reason"],
            _pairs(message["headers"]),
            message["body"],
            _pairs(message["trailers"]),
            _seconds(event["response_start_us"]) or 0.0,
            _seconds(event["response_end_us"]),
        )
    return _Parts(
        request_line=(
            host,
            port,
            event["method"].encode(),
            event["scheme"].encode(),
            # Only HTTP/2 and later carry :authority; HTTP/1 has the Host header.
            authority.encode() if version.startswith(("HTTP/2", "HTTP/3")) else b"",
            event["path"],
            version.encode(),
        ),
        request_headers=_pairs(request["headers"]),
        request_body=request["body"],
        request_trailers=_pairs(request["trailers"]),
        request_times=(
            _seconds(event["request_start_us"]) or 0.0,
            _seconds(event["request_end_us"]),
        ),
        client=(client["host"], client["port"]),
        tls=event["scheme"] == "https",
        upstream=upstream,
        response=answered,
        error=event["error"] or None,
    )


def event_to_flow(event: HttpExchange) -> http.HTTPFlow:
    """An `HTTPFlow` carrying what the event recorded (for filters; never sent anywhere)."""
    parts = _parts(event)
    flow = http.HTTPFlow(
        connection.Client(peername=parts.client, sockname=("", 0), tls=parts.tls),
        connection.Server(address=parts.upstream),
    )
    host, port, method, scheme, authority, path, version = parts.request_line
    flow.request = http.Request(
        host=host,
        port=port,
        method=method,
        scheme=scheme,
        authority=authority,
        path=path,
        http_version=version,
        headers=parts.request_headers,
        content=parts.request_body,
        trailers=parts.request_trailers or None,
        timestamp_start=parts.request_times[0],
        timestamp_end=parts.request_times[1],
    )
    if parts.response is not None:
        r_version, status, reason, headers, body, trailers, start, end = parts.response
        flow.response = http.Response(
            http_version=r_version,
            status_code=status,
            reason=reason,
            headers=headers,
            content=body,
            trailers=trailers or None,
            timestamp_start=start,
            timestamp_end=end,
        )
    if parts.error:
        flow.error = Error(parts.error)
    return flow


class _Scratch:
    """One flow whose fields are overwritten for each event (see `compile_filter`).

    The data objects are assigned directly: mitmproxy type-checks them only
    when they are made, and the values here have the types it checks for.
    """

    def __init__(self) -> None:
        self.flow = http.HTTPFlow(
            connection.Client(peername=("", 0), sockname=("", 0)),
            connection.Server(address=None),
        )
        self.flow.request = http.Request("", 0, b"GET", b"http", b"", b"/", b"HTTP/1.1", (),
                                         b"", None, 0.0, None)  # fmt: skip
        self.response = http.Response(b"HTTP/1.1", 200, b"", (), b"", None, 0.0, None)

    def fill(self, event: HttpExchange) -> http.HTTPFlow:
        parts = _parts(event)
        flow = self.flow
        req = flow.request.data
        (req.host, req.port, req.method, req.scheme, req.authority, req.path,
         req.http_version) = parts.request_line  # fmt: skip
        req.headers = http.Headers(parts.request_headers)
        req.content = parts.request_body
        req.trailers = http.Headers(parts.request_trailers) if parts.request_trailers else None
        req.timestamp_start, req.timestamp_end = parts.request_times
        flow.client_conn.peername = parts.client
        flow.client_conn.tls = parts.tls
        flow.server_conn.address = parts.upstream
        if parts.response is None:
            flow.response = None
        else:
            resp = self.response.data
            (resp.http_version, resp.status_code, resp.reason, headers, resp.content,
             trailers, resp.timestamp_start, resp.timestamp_end) = parts.response  # fmt: skip
            resp.headers = http.Headers(headers)
            resp.trailers = http.Headers(trailers) if trailers else None
            flow.response = self.response
        flow.error = Error(parts.error) if parts.error else None
        return flow
