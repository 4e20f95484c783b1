"""Replace correlated values in a request: whole path segments, query values, JSON, headers.

`substitute(request, mapping)` is the step half of value correlation
(`replayer.transforming.correlation`): each production value in `mapping`
becomes the shadow's where it stands whole, so `/orders/17`, `?order=17`,
`{"order_id": 17}` and `X-Order: 17` change while `/orders/170`,
`?q=2017` and `{"note": "order 17"}` do not. Path segments and query values
are compared percent-decoded and written back percent-encoded; JSON values
(strings and numbers; a number stays a number when the shadow's value is one)
in an uncompressed JSON body, which is then written as compact JSON with its
Content-Length updated. Anything unchanged keeps its exact bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from replayer.models import OutgoingRequest

#: A JSON request body larger than this is left alone.
MAX_JSON_BYTES = 4 * 1024 * 1024
#: Headers whose values are never correlated (framing, routing).
_KEEP_HEADERS = frozenset(
    ("host", "content-length", "content-type", "content-encoding", "transfer-encoding")
)
#: Characters left as they are when a path segment is written back (RFC 3986 pchar).
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"


@dataclass(frozen=True, slots=True)
class Learned:
    """The shadow's value for a production value, and the rule that learned it."""

    value: str
    number: bool  # the shadow's value was a JSON number
    rule: str


def substitute(
    request: OutgoingRequest, mapping: Mapping[str, Learned]
) -> tuple[OutgoingRequest, list[str]]:
    """The request with `mapping` applied (the same object if unchanged), and the rules used."""
    used: list[str] = []
    path = _path(request.path, mapping, used)
    headers = _headers(request.headers, mapping, used)
    body = _json_body(request, mapping, used)
    if not used:
        return request, used
    if body is not None:
        headers = _content_length(headers if headers is not None else request.headers, len(body))
    return (
        replace(
            request,
            path=path if path is not None else request.path,
            headers=headers if headers is not None else request.headers,
            body=body if body is not None else request.body,
        ),
        used,
    )


def _use(used: list[str], learned: Learned) -> None:
    if learned.rule not in used:
        used.append(learned.rule)


def _path(raw: str, mapping: Mapping[str, Learned], used: list[str]) -> str | None:
    path, mark, query = raw.partition("?")
    changed = False
    segments = path.split("/")
    for i, segment in enumerate(segments):
        learned = mapping.get(unquote(segment)) if segment else None
        if learned is not None:
            segments[i] = quote(learned.value, safe=_SEGMENT_SAFE)
            _use(used, learned)
            changed = True
    if query:
        params = query.split("&")
        for i, param in enumerate(params):
            name, eq, value = param.partition("=")
            learned = mapping.get(unquote_plus(value)) if eq and value else None
            if learned is not None:
                params[i] = f"{name}={quote(learned.value, safe='')}"
                _use(used, learned)
                changed = True
        query = "&".join(params)
    return "/".join(segments) + mark + query if changed else None


def _headers(
    headers: tuple[tuple[str, str], ...], mapping: Mapping[str, Learned], used: list[str]
) -> tuple[tuple[str, str], ...] | None:
    out: list[tuple[str, str]] | None = None
    for i, (name, value) in enumerate(headers):
        learned = mapping.get(value.strip())
        if learned is None or name.lower() in _KEEP_HEADERS:
            continue
        if out is None:
            out = list(headers)
        out[i] = (name, learned.value)
        _use(used, learned)
    return tuple(out) if out is not None else None


def _json_body(
    request: OutgoingRequest, mapping: Mapping[str, Learned], used: list[str]
) -> bytes | None:
    body = request.body
    if not body or len(body) > MAX_JSON_BYTES or body.lstrip()[:1] not in (b"{", b"["):
        return None
    encoding = (request.header("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    hits: list[Learned] = []
    try:
        document = _replace_json(document, mapping, hits)
    except RecursionError:
        return None
    if not hits:
        return None
    for learned in hits:
        _use(used, learned)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def _replace_json(value: Any, mapping: Mapping[str, Learned], hits: list[Learned]) -> Any:
    if isinstance(value, dict):
        return {k: _replace_json(v, mapping, hits) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_json(v, mapping, hits) for v in value]
    if isinstance(value, str):
        learned = mapping.get(value)
        if learned is None:
            return value
        hits.append(learned)
        return learned.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        learned = mapping.get(json.dumps(value))
        if learned is None:
            return value
        hits.append(learned)
        if learned.number:
            try:
                return json.loads(learned.value)
            except ValueError:
                return learned.value
        return learned.value
    return value


def _content_length(
    headers: tuple[tuple[str, str], ...], length: int
) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, str(length)) if name.lower() == "content-length" else (name, value)
        for name, value in headers
    )
