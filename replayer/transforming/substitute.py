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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from replayer.models import OutgoingRequest
from replayer.transforming.rules import Draft

#: A JSON request body larger than this is left alone.
MAX_JSON_BYTES = 4 * 1024 * 1024
#: Headers whose values are never correlated (framing, routing).
_KEEP_HEADERS = frozenset(
    ("host", "content-length", "content-type", "content-encoding", "transfer-encoding")
)
_VALUE = itemgetter(1)
#: Characters left as they are when a path segment is written back (RFC 3986 pchar).
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"


@dataclass(frozen=True, slots=True)
class Learned:
    """The shadow's value for a production value, and the rule that learned it."""

    value: str
    number: bool  # the shadow's value was a JSON number
    rule: str
    segment: str = ""  # `value` percent-encoded for a path segment
    query: str = ""  # `value` percent-encoded for a query value
    header_safe: bool = True  # no CR, LF or NUL: it may stand as a header value

    @classmethod
    def of(cls, value: str, number: bool, rule: str) -> Learned:
        """With its encoded forms, computed once rather than at every replacement."""
        safe = not any(c in value for c in "\r\n\x00")
        return cls(
            value, number, rule, quote(value, safe=_SEGMENT_SAFE), quote(value, safe=""), safe
        )


class Finder:
    """Whether a request may hold any of a mapping's values: one regex search per part.

    Most requests hold none; this says so without splitting the path, parsing
    the query or the JSON body. It may say yes where nothing is replaced (a
    value inside a longer segment, a percent-encoded path, a JSON body with
    escapes), never no where something would be.
    """

    __slots__ = ("_bytes", "_text", "mapping", "one_scan", "slash_free")

    def __init__(self, mapping: Mapping[str, Learned]) -> None:
        self.mapping = mapping
        values = sorted(mapping, key=len, reverse=True)  # the longest match first
        # (?!) never matches: an empty mapping has nothing to find.
        self._text = re.compile("|".join(re.escape(v) for v in values) or "(?!)")
        encoded = (re.escape(v.encode("utf-8", "surrogatepass")) for v in values)
        self._bytes = re.compile(b"|".join(encoded) or b"(?!)")
        #: No value holds a `/`: a match never spans two path segments (see `target`).
        self.slash_free = not any("/" in v for v in values)
        #: ... nor a `?`: a match never spans the path and the query either, so one
        #: scan of the whole request target serves both (see `target`).
        self.one_scan = self.slash_free and not any("?" in v for v in values)

    def search(self, text: str) -> bool:
        return self._text.search(text) is not None

    def has_bytes(self, body: bytes) -> bool:
        return self._bytes.search(body) is not None

    def target(self, raw: str, used: list[str]) -> str | None:
        """`_path` of a request target without `%` or `+`, in one scan; None if unchanged.

        Needs `one_scan`, or `slash_free` for a path without a query: then every
        match lies inside one segment, and a segment equal to a value is matched
        whole from its start (the longest value that fits is tried first), so
        this finds exactly what splitting the path at `/` and looking each
        segment up would. A match after the `?` hands the query to `_query`
        (the same look-up `_path` makes)."""
        mark = raw.find("?")
        end = len(raw) if mark < 0 else mark
        out: list[str] | None = None
        last = 0
        in_query = False
        for match in self._text.finditer(raw):
            start, stop = match.span()
            if start > end:
                in_query = True
                break
            if (start and raw[start - 1] != "/") or (stop < end and raw[stop] != "/"):
                continue  # part of a longer segment
            learned = self.mapping[match.group()]
            if out is None:
                out = []
            out.append(raw[last:start])
            out.append(learned.segment)
            last = stop
            if learned.rule not in used:
                used.append(learned.rule)
        new_query = _query(raw[end + 1 :], self.mapping, used) if in_query else None
        if out is None and new_query is None:
            return None
        if out is not None:
            out.append(raw[last:end])
        path = raw[:end] if out is None else "".join(out)
        return path + raw[end:] if new_query is None else f"{path}?{new_query}"

    def may_hit(
        self, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[bool, bool, bool]:
        """Whether the path, the headers, the body may hold a value."""
        in_path = "%" in path or "+" in path or self._text.search(path) is not None
        in_headers = not self.mapping.keys().isdisjoint(map(_VALUE, headers))
        in_body = bool(body) and (b"\\" in body or self._bytes.search(body) is not None)
        return in_path, in_headers, in_body


def substitute(
    request: OutgoingRequest, mapping: Mapping[str, Learned], finder: Finder | None = None
) -> tuple[OutgoingRequest, list[str]]:
    """The request with `mapping` applied (the same object if unchanged), and the rules used.

    `finder` (built for `mapping`) rules most requests out at once.
    """
    draft = Draft(request)
    used = substitute_draft(draft, mapping, finder)
    return draft.build(request), used


def substitute_draft(
    draft: Draft, mapping: Mapping[str, Learned], finder: Finder | None = None
) -> list[str]:
    """Apply `mapping` to a request being rewritten; the rules whose values were replaced.

    A changed body gets its Content-Length header right here.
    """
    used: list[str] = []
    headers = draft.headers
    raw = draft.path
    if finder is not None and finder.one_scan and "%" not in raw and "+" not in raw:
        # The usual request: one scan of the target instead of `may_hit` and `_path`.
        path = finder.target(raw, used)
        if path is not None:
            draft.path = path
        in_headers = not mapping.keys().isdisjoint(map(_VALUE, headers))
        in_body = bool(draft.body) and (b"\\" in draft.body or finder.has_bytes(draft.body))
    else:
        if finder is None:
            in_path = in_headers = in_body = True
        else:
            in_path, in_headers, in_body = finder.may_hit(raw, headers, draft.body)
        if in_path:
            path = _path(raw, mapping, used, finder)
            if path is not None:
                draft.path = path
    if in_headers:
        _headers(headers, draft.names, mapping, used)
    if in_body:
        new_body = _json_body(draft.body, draft.header("content-encoding"), mapping, used)
        if new_body is not None:
            draft.body = new_body
            length = str(len(new_body))
            for i, name in enumerate(draft.names):
                if name == "content-length":
                    headers[i] = (headers[i][0], length)
    if used:
        draft.changed = True
    return used


def _use(used: list[str], learned: Learned) -> None:
    if learned.rule not in used:
        used.append(learned.rule)


def _path(
    raw: str, mapping: Mapping[str, Learned], used: list[str], finder: Finder | None = None
) -> str | None:
    path, mark, query = raw.partition("?")
    if finder is not None and finder.slash_free and "%" not in path:
        new_path = finder.target(path, used)  # `path` holds no `?`: `slash_free` is enough
    else:
        new_path = _segments(path, mapping, used)
    new_query = None
    if query and (finder is None or "%" in query or "+" in query or finder.search(query)):
        new_query = _query(query, mapping, used)
    if new_path is None and new_query is None:
        return None
    return (
        (path if new_path is None else new_path)
        + mark
        + (query if new_query is None else new_query)
    )


def _segments(path: str, mapping: Mapping[str, Learned], used: list[str]) -> str | None:
    changed = False
    segments = path.split("/")
    for i, segment in enumerate(segments):
        learned = mapping.get(unquote(segment) if "%" in segment else segment)
        if learned is not None:
            segments[i] = learned.segment
            _use(used, learned)
            changed = True
    return "/".join(segments) if changed else None


def _query(query: str, mapping: Mapping[str, Learned], used: list[str]) -> str | None:
    changed = False
    params = query.split("&")
    for i, param in enumerate(params):
        name, _, value = param.partition("=")
        if not value:
            continue
        learned = mapping.get(unquote_plus(value) if "%" in value or "+" in value else value)
        if learned is not None:
            params[i] = f"{name}={learned.query}"
            _use(used, learned)
            changed = True
    return "&".join(params) if changed else None


def _headers(
    headers: list[tuple[str, str]],
    names: list[str],
    mapping: Mapping[str, Learned],
    used: list[str],
) -> None:
    for i, (name, value) in enumerate(headers):
        learned = mapping.get(value)
        if learned is None or names[i] in _KEEP_HEADERS or not learned.header_safe:
            continue
        headers[i] = (name, learned.value)
        _use(used, learned)


def _json_body(
    body: bytes, encoding: str | None, mapping: Mapping[str, Learned], used: list[str]
) -> bytes | None:
    if not body or len(body) > MAX_JSON_BYTES or body.lstrip()[:1] not in (b"{", b"["):
        return None
    if (encoding or "identity").strip().lower() != "identity":
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
