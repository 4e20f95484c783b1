"""mitmproxy filter expressions (`~m POST & ~u /api`) over recorded events.

The replayer speaks the same filter language as the recorder (and as
mitmproxy's own `--view-filter`, `save_stream_filter` ...): an expression is
parsed by `mitmproxy.flowfilter` and matched against an `HTTPFlow` rebuilt from
the event, so every operator means what it means in mitmproxy: `~m` method,
`~u` URL (scheme, the recorded Host, path and query), `~d` domain, `~h`/`~hq`/
`~hs` headers, `~b`/`~bq`/`~bs` bodies, `~c` status code, `~t` content type,
`~e` an upstream error, `~s` has a response, `~src`/`~dst` the client and
upstream addresses, `!`, `&`, `|` and parentheses.

The rebuilt flow holds what the event holds: bodies as recorded (cut when the
recorder truncated them), the request target's host and port from the
upstream the recorder forwarded to, the Host header the client sent.
Importing this module loads mitmproxy (about half a second), so the replayer
imports it only when a filter is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mitmproxy import connection, flowfilter, http
from mitmproxy.flow import Error

from trafficmirror.errors import ConfigError


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


def compile_filter(expr: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over decoded events that is True where `expr` matches."""
    matcher = parse_filter(expr)

    def matches(event: Mapping[str, Any]) -> bool:
        return bool(matcher(event_to_flow(event)))

    return matches


def _pairs(flat: list[bytes] | None) -> tuple[tuple[bytes, bytes], ...]:
    if not flat:
        return ()
    return tuple(zip(flat[0::2], flat[1::2], strict=False))


def _seconds(micros: int | None) -> float | None:
    return None if micros is None else micros / 1_000_000


def event_to_flow(event: Mapping[str, Any]) -> http.HTTPFlow:
    """An `HTTPFlow` carrying what the event recorded (for filters; never sent anywhere)."""
    client = event["client"]
    server = event.get("server")
    upstream = (server["host"], server["port"]) if server else None
    authority = str(event["authority"])
    host, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    default_port = 443 if event["scheme"] == "https" else 80
    if upstream is not None:
        host, port = upstream
    else:
        port = int(port_text) if port_text.isdigit() else default_port
    flow = http.HTTPFlow(
        connection.Client(
            peername=(client["host"], client["port"]),
            sockname=("", 0),
            tls=event["scheme"] == "https",
        ),
        connection.Server(address=upstream),
    )
    request = event["request"]
    flow.request = http.Request(
        host=host,
        port=int(port),
        method=str(event["method"]).encode(),
        scheme=str(event["scheme"]).encode(),
        authority=authority.encode() if event["http_version"].startswith("HTTP/2") else b"",
        path=event["path"],
        http_version=str(event["http_version"]).encode(),
        headers=_pairs(request["headers"]),
        content=request["body"],
        trailers=_pairs(request.get("trailers")) or None,
        timestamp_start=_seconds(event["request_start_us"]) or 0.0,
        timestamp_end=_seconds(event.get("request_end_us")),
    )
    response = event.get("response")
    if response is not None:
        message = response["message"]
        flow.response = http.Response(
            http_version=str(response["http_version"]).encode(),
            status_code=int(response["status"]),
            reason=response["reason"],
            headers=_pairs(message["headers"]),
            content=message["body"],
            trailers=_pairs(message.get("trailers")) or None,
            timestamp_start=_seconds(event.get("response_start_us")) or 0.0,
            timestamp_end=_seconds(event.get("response_end_us")),
        )
    if event.get("error"):
        flow.error = Error(str(event["error"]))
    return flow
