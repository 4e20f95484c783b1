"""Value correlation: follow-ups ask the shadow for the IDs the shadow created.

Production answered `POST /orders` with `{"id": 17}`, the shadow with
`{"id": 903}`; the recorded `GET /orders/17` must become `GET /orders/903`.
`Correlation` is both halves, for one role (shadow or baseline): as an
`Observer` it reads each finished exchange's production response (the event)
and the target's, and where a `correlate:` rule finds a value in both that
differs, it remembers the pair for the recorded connection (the Kafka message
key); as a `Step` it replaces, in the later requests of that connection, each
production value standing as a whole path segment, query value, JSON value or
header value with the shadow's (`replayer.transforming.substitute`), and hands
every pair it knows for the connection to the comparison (`equal_values`).
Requests of one key are replayed in order by one worker, so this holds with N
workers; records without a key are not correlated. Memory is bounded per key
and overall (`Limits`); evictions are counted.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from replayer.models import OutgoingRequest, Response
from replayer.transforming.config import Correlate
from replayer.transforming.rules import Draft
from replayer.transforming.step import Observer, Step, TransformContext
from replayer.transforming.substitute import Finder, Learned, substitute_draft
from replayer.transforming.tally import Tally
from trafficmirror.plumbing.jsonpath import DEEP, JsonPattern, Segment

logger = logging.getLogger(__name__)

VALUES = Tally(
    "trafficmirror_replayer_correlation_values",
    "Value correlation: production/shadow value pairs learned, requests in which values "
    "were replaced by the shadow's (substituted), and pairs forgotten to stay within the "
    "memory bounds (evicted).",
    "event",
    {"learned": "learned", "substituted": "substituted", "evicted": "evicted"},
)

#: A response body larger than this (decoded) is not searched.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Values longer than this are not learned (an ID, not a document).
MAX_VALUE_CHARS = 512
#: Bytes charged per pair on top of its text (dict entry, strings, tuple).
PAIR_OVERHEAD = 160


@dataclass(frozen=True)
class Limits:
    """Memory bounds: pairs and bytes per recorded connection, and over all of them."""

    values_per_key: int = 256
    bytes_per_key: int = 64 * 1024
    values: int = 200_000
    bytes: int = 64 * 1024 * 1024


@dataclass
class CorrelationCounts:
    """What correlation did in this process (one role)."""

    learned: int = 0
    substituted: int = 0  # requests in which at least one value was replaced
    evicted: int = 0


class _KeyMap:
    """The pairs of one recorded connection, oldest first."""

    __slots__ = ("_equal", "_finder", "bytes", "pairs")

    def __init__(self) -> None:
        self.pairs: OrderedDict[str, Learned] = OrderedDict()
        self.bytes = 0
        self._finder: Finder | None = None
        self._equal: frozenset[tuple[str, str]] | None = None

    def finder(self) -> Finder:
        """The `Finder` of the pairs now (built again after they changed)."""
        if self._finder is None:
            self._finder = Finder(self.pairs)
        return self._finder

    def equal(self) -> frozenset[tuple[str, str]]:
        """The (production, shadow) pairs, for the comparison."""
        if self._equal is None:
            self._equal = frozenset((p, learned.value) for p, learned in self.pairs.items())
        return self._equal

    def changed(self) -> None:
        self._finder = None
        self._equal = None


def _cost(production: str, learned: Learned) -> int:
    return (
        len(production)
        + len(learned.value)
        + len(learned.segment)
        + len(learned.query)
        + len(learned.rule)
        + PAIR_OVERHEAD
    )


class Correlation:
    """The correlation step and observer of one role; see the module docstring."""

    name = "correlate"
    #: The chain lists no name for it: `edit` lists the correlate rules it used.
    lists_names = True

    def __init__(self, rules: tuple[Correlate, ...], limits: Limits | None = None) -> None:
        self.rules = rules
        self.limits = limits or Limits()
        self.counts = CorrelationCounts()
        VALUES.track(self, self.counts)
        self._keys: OrderedDict[bytes, _KeyMap] = OrderedDict()  # least recently used first
        self._values = 0
        self._bytes = 0

    # -- the step ---------------------------------------------------------------------

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """Replace the production values known for this connection by the shadow's."""
        draft = Draft(request)
        return draft.build(request) if self.edit(draft, context) else request

    def edit(self, draft: Draft, context: TransformContext) -> bool:
        """`apply` on a request being rewritten (the chain shares one with the rules)."""
        key = context.key
        if key is None:
            return False
        entry = self._keys.get(key)
        if entry is None or not entry.pairs:
            return False
        self._keys.move_to_end(key)
        # The cached forms, built again only after the pairs changed.
        context.equal_values.update(entry._equal or entry.equal())
        used = substitute_draft(draft, entry.pairs, entry._finder or entry.finder())
        if not used:
            return False
        self.counts.substituted += 1
        applied = context.applied
        for rule in used:
            if rule not in applied:
                applied.append(rule)
        return True

    async def aclose(self) -> None:
        """Nothing to release (the interface the stage calls on every step)."""

    # -- the observer -----------------------------------------------------------------

    def observe(self, context: TransformContext, response: Response | None) -> None:
        """Learn this exchange's pairs: production's value and the target's, where they differ."""
        production = context.event["response"]
        if context.key is None or response is None or production is None:
            return
        message = production["message"]
        # Equal bodies hold equal values: most exchanges, and nothing to parse.
        same_body = not message["body_truncated"] and message["body"] == response.body
        prod = shad = None
        for rule in self.rules:
            if same_body and rule.response_header is None:
                continue
            if prod is None or shad is None:
                prod = _Side(
                    partial(_flat_header, message["headers"]),
                    None if message["body_truncated"] else message["body"],
                )
                shad = _Side(
                    partial(_text_header, response.headers),
                    response.body,
                )
            for a, b, number in _pairs(rule, prod, shad):
                context.equal_values.add((a, b))
                if a != b:
                    self._learn(context.key, a, Learned.of(b, number, rule.name))

    def _learn(self, key: bytes, production: str, learned: Learned) -> None:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _KeyMap()
        else:
            self._keys.move_to_end(key)
        old = entry.pairs.pop(production, None)
        if old is not None:
            self._forget(entry, production, old)
        cost = _cost(production, learned)
        entry.pairs[production] = learned
        entry.changed()
        entry.bytes += cost
        self._values += 1
        self._bytes += cost
        self.counts.learned += 1
        limits = self.limits
        while len(entry.pairs) > limits.values_per_key or entry.bytes > limits.bytes_per_key:
            self._evict(entry, *entry.pairs.popitem(last=False))
        while self._values > limits.values or self._bytes > limits.bytes:
            oldest, victim = next(iter(self._keys.items()))
            while victim.pairs:
                self._evict(victim, *victim.pairs.popitem(last=False))
            del self._keys[oldest]
        if not entry.pairs:
            self._keys.pop(key, None)

    def _forget(self, entry: _KeyMap, production: str, learned: Learned) -> None:
        entry.changed()
        cost = _cost(production, learned)
        entry.bytes -= cost
        self._values -= 1
        self._bytes -= cost

    def _evict(self, entry: _KeyMap, production: str, learned: Learned) -> None:
        self._forget(entry, production, learned)
        self.counts.evicted += 1

    @property
    def size(self) -> tuple[int, int, int]:
        """(keys, pairs, bytes) held now."""
        return len(self._keys), self._values, self._bytes


def build_correlation(
    rules: tuple[Correlate, ...], limits: Limits | None = None
) -> tuple[Step, Observer]:
    """The step and the observer of one role (one object doing both)."""
    correlation = Correlation(rules, limits)
    return correlation, correlation


# -- finding values in responses ------------------------------------------------------


class _Side:
    """One response as correlation reads it: a header lookup, the body decoded on demand."""

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


def _flat_header(flat: list[bytes], name: str) -> str | None:
    wanted = name.encode("latin-1")
    for i in range(0, len(flat) - 1, 2):
        if flat[i].lower() == wanted:
            return flat[i + 1].decode("utf-8", "replace")
    return None


def _text_header(pairs: tuple[tuple[str, str], ...], name: str) -> str | None:
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


def _pairs(rule: Correlate, prod: _Side, shad: _Side) -> Iterator[tuple[str, str, bool]]:
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
