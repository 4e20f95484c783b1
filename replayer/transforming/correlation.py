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
Where a rule finds its value in a response is `transforming.responsevalues`.
Requests of one key are replayed in order by one worker, so this holds with N
workers; records without a key are not correlated. Memory is bounded per key
and overall (`Limits`); evictions are counted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

from replayer.models import OutgoingRequest, Response
from replayer.transforming.config import Correlate
from replayer.transforming.responsevalues import Side, flat_header, pairs, text_header
from replayer.transforming.rules import Draft
from replayer.transforming.step import Observer, Step, TransformContext
from replayer.transforming.substitute import Finder, Learned, substitute_draft
from replayer.transforming.tally import Tally

logger = logging.getLogger(__name__)

VALUES = Tally(
    "trafficmirror_replayer_correlation_values",
    "Value correlation: production/shadow value pairs learned, requests in which values "
    "were replaced by the shadow's (substituted), and pairs forgotten to stay within the "
    "memory bounds (evicted).",
    "event",
    {"learned": "learned", "substituted": "substituted", "evicted": "evicted"},
)

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
                prod = Side(
                    partial(flat_header, message["headers"]),
                    None if message["body_truncated"] else message["body"],
                )
                shad = Side(
                    partial(text_header, response.headers),
                    response.body,
                )
            for a, b, number in pairs(rule, prod, shad):
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
