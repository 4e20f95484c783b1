"""Where a `correlate:` rule finds its value in a response, production's and the shadow's.

Value correlation (`transforming.correlation`) asks, for each finished
exchange and each rule, which (production value, shadow value) pairs the two
responses hold: `Side` is one response as a rule reads it (a header lookup,
the body decoded and parsed only when a rule needs it: gzip and deflate
inflated, other encodings and bodies over `MAX_BODY_BYTES` not searched), and
`pairs()` walks one rule (`response_header`, and for a Location-like header the
one path segment that differs; `response_regex`, first group; `response_json`,
a JSONPath) over both sides. Values over `MAX_VALUE_CHARS` are IDs no more and
are not learned.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from replayer.transforming.config import Correlate
from trafficmirror.plumbing.jsonpath import DEEP, JsonPattern, Segment

#: A response body larger than this (decoded) is not searched.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Values longer than this are not learned (an ID, not a document).
MAX_VALUE_CHARS = 512


class Side:
    """One response as a rule reads it: a header lookup, the body decoded on demand."""

    __slots__ = ("_body", "_json", "_text", "header")

    _UNSET: Any = object()

    def __init__(self, header: Callable[[str], str | None], body: bytes | None) -> None:
        #: The first value of a header (lower-case name), or None.
        self.header = header
        self._body = body
        self._text: Any = self._UNSET
        self._json: Any = self._UNSET

    def text(self) -> str | None:
        if self._text is self._UNSET:
            self._text = _decode_text(self._body, self.header("content-encoding"))
        result: str | None = self._text
        return result

    def json(self) -> Any:
        if self._json is self._UNSET:
            text = self.text()
            self._json = None
            if text is not None and text.lstrip()[:1] in ("{", "["):
                try:
                    self._json = json.loads(text)
                except (ValueError, RecursionError):
                    pass
        return self._json


def flat_header(flat: list[bytes], name: str) -> str | None:
    """The first value of header `name` (lower case) in an event's flat name/value list."""
    wanted = name.encode("latin-1")
    for i in range(0, len(flat) - 1, 2):
        if flat[i].lower() == wanted:
            return flat[i + 1].decode("utf-8", "replace")
    return None


def text_header(pairs: tuple[tuple[str, str], ...], name: str) -> str | None:
    """The first value of header `name` (lower case) in a response's header pairs."""
    for key, value in pairs:
        if key.lower() == name:
            return value
    return None


def _decode_text(body: bytes | None, encoding: str | None) -> str | None:
    if not body:
        return None
    coding = (encoding or "").strip().lower()
    try:
        if coding in ("gzip", "x-gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS
            inflater = zlib.decompressobj(wbits)
            body = inflater.decompress(body, MAX_BODY_BYTES)
            if inflater.unconsumed_tail:
                return None
        elif coding not in ("", "identity"):
            return None  # br, zstd ...: not searched
        if len(body) > MAX_BODY_BYTES:
            return None
        return body.decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        return None


def pairs(rule: Correlate, prod: Side, shad: Side) -> Iterator[tuple[str, str, bool]]:
    """(production text, shadow text, shadow value is a JSON number) for one rule."""
    if rule.response_header is not None:
        a, b = prod.header(rule.response_header), shad.header(rule.response_header)
        if a and b:
            yield from _checked(a, b, False)
            segments = _differing_segment(a, b)
            if segments is not None:
                yield from _checked(*segments, False)
    elif rule.response_regex is not None:
        text_a, text_b = prod.text(), shad.text()
        if text_a is None or text_b is None:
            return
        found_a = [m.group(1) for m in rule.response_regex.finditer(text_a)]
        found_b = [m.group(1) for m in rule.response_regex.finditer(text_b)]
        if len(found_a) != len(found_b):  # cannot tell which is which beyond the first
            found_a, found_b = found_a[:1], found_b[:1]
        for a, b in zip(found_a, found_b, strict=False):
            if a is not None and b is not None:
                yield from _checked(a, b, False)
    elif rule.response_json is not None:
        doc_a, doc_b = prod.json(), shad.json()
        if doc_a is None or doc_b is None:
            return
        for path, value in _matches(rule.response_json, doc_a):
            other = _at(doc_b, path)
            a, b = _scalar(value), _scalar(other)
            if a is not None and b is not None:
                yield from _checked(a, b, _is_number(other))


def _checked(a: str, b: str, number: bool) -> Iterator[tuple[str, str, bool]]:
    if a and b and len(a) <= MAX_VALUE_CHARS and len(b) <= MAX_VALUE_CHARS:
        yield a, b, number


_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?")


def _differing_segment(a: str, b: str) -> tuple[str, str] | None:
    """`/orders/17` vs `/orders/903` → ("17", "903"): paths differing in one segment only."""
    path_a = _URL.sub("", a, count=1).split("?", 1)[0].split("#", 1)[0].split("/")
    path_b = _URL.sub("", b, count=1).split("?", 1)[0].split("#", 1)[0].split("/")
    if len(path_a) != len(path_b) or len(path_a) < 2:
        return None
    differing = [(x, y) for x, y in zip(path_a, path_b, strict=True) if x != y]
    if len(differing) != 1 or not all(differing[0]):
        return None
    return differing[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(value: Any) -> str | None:
    """A JSON string's text, a number's JSON text (`replayer.comparing.mapped` reads them so)."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return json.dumps(value)
    return None


#: JSON nodes visited per document for a pattern with `*` or `..`.
_MAX_NODES = 100_000


def _matches(pattern: JsonPattern, doc: Any) -> Iterator[tuple[list[Segment], Any]]:
    tokens = pattern.tokens
    if all(isinstance(t, str | int) for t in tokens):  # a concrete path: look it up
        path: list[Segment] = [t for t in tokens if isinstance(t, str | int)]
        value = _at(doc, path)
        if value is not _MISSING:
            yield path, value
        return
    budget = [_MAX_NODES]
    deep = any(t is DEEP for t in tokens)
    depth = None if deep else len(tokens)
    yield from _walk(pattern, doc, [], depth, budget)


def _walk(
    pattern: JsonPattern, node: Any, path: list[Segment], depth: int | None, budget: list[int]
) -> Iterator[tuple[list[Segment], Any]]:
    budget[0] -= 1
    if budget[0] < 0:
        return
    if pattern.matches(path):
        yield list(path), node
    if depth is not None and len(path) >= depth:
        return
    children: Any = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for segment, child in children:
        path.append(segment)
        yield from _walk(pattern, child, path, depth, budget)
        path.pop()


_MISSING: Any = object()


def _at(doc: Any, path: list[Segment]) -> Any:
    node = doc
    for segment in path:
        if isinstance(segment, str) and isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(segment, int) and isinstance(node, list) and 0 <= segment < len(node):
            node = node[segment]
        else:
            return _MISSING
    return node
