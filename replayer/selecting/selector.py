"""The pipeline's select step: which records a replay sends.

Four independent choices, each dropping what it does not want with its own
reason: `outside-window` (the time window), `sample` (a stable share of the
recorded connections), `method` (only safe methods unless told otherwise) and
`filter` (a mitmproxy filter expression). The pipeline counts a dropped record
as `skipped-<reason>` in the summary and the `trafficmirror_replayer_skipped`
metric, and it counts as handled, so it never holds its partition's offsets
back. The first two need only the Kafka record, so they run before the event
is decoded; the others look at the event. `Selector` says what each means.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from schemas.records import HttpExchange

#: Methods replayed unless `--methods` says otherwise: the ones that do not write.
SAFE_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})

OUTSIDE_WINDOW = "outside-window"
SAMPLE = "sample"
METHOD = "method"
FILTER = "filter"

_HASH_SPACE = 2**64


@dataclass(frozen=True)
class SelectOptions:
    """What a replay sends (the CLI's selection options); the defaults send every safe request.

    `since_ms`/`until_ms`: the time window, Unix milliseconds, `until`
    exclusive; None = open. `sample_pct`: percent of recorded connections kept
    (0 < pct ≤ 100). `filter_expr`: a mitmproxy filter expression, None = all.
    `methods`: upper-case methods to send, None = every method (`--methods ALL`).
    """

    since_ms: int | None = None
    until_ms: int | None = None
    sample_pct: float = 100.0
    filter_expr: str | None = None
    methods: frozenset[str] | None = SAFE_METHODS

    @property
    def windowed(self) -> bool:
        """True when a time window is set."""
        return self.since_ms is not None or self.until_ms is not None

    def describe(self) -> str:
        """`methods GET, HEAD, OPTIONS; sample 25%; filter '~u /api'`, for logs and summaries."""
        parts = [
            "every method" if self.methods is None else "methods " + ", ".join(sorted(self.methods))
        ]
        if self.since_ms is not None or self.until_ms is not None:
            parts.append(f"window {_when(self.since_ms)} to {_when(self.until_ms)} (exclusive)")
        if self.sample_pct < 100:
            parts.append(f"sample {self.sample_pct:g}% of connections")
        if self.filter_expr is not None:
            parts.append(f"filter {self.filter_expr!r}")
        return "; ".join(parts)


def _when(ms: int | None) -> str:
    if ms is None:
        return "open"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def sample_point(key: bytes | None) -> float:
    """Where a message key falls in [0, 1): the same on every machine, run and Python.

    Records without a key share one point, so they are kept or dropped together.
    """
    digest = hashlib.blake2b(key or b"", digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


def parse_methods(text: str) -> frozenset[str] | None:
    """`GET,HEAD` → {"GET", "HEAD"}; `ALL` → None. Raises ValueError on a bad name."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("give at least one method, or ALL")
    if any(name.upper() == "ALL" for name in names):
        if len(names) > 1:
            raise ValueError("ALL stands alone: it already means every method")
        return None
    for name in names:
        # RFC 9110 method = token; letters only covers every method in use.
        if not name.isascii() or not name.replace("-", "").isalpha():
            raise ValueError(f"{name!r} is not an HTTP method")
    return frozenset(name.upper() for name in names)


class Selector:
    """Applies `SelectOptions` to records (`before_decode`) and events (`after_decode`).

    * `outside-window`: the record's Kafka timestamp (the request's start) is
      not in `since ≤ t < until`. `replay range` and `inspect` turn the window
      into offset spans first (`replayer.consuming.window`); this check removes
      what the spans' safety margin let in, so exactly the window's records
      are sent;
    * `sample`: the record's message key (the recorded client connection) does
      not fall into the first `sample_pct` percent of a stable hash (BLAKE2b),
      so every run and every worker keeps the same connections, each with all
      its requests;
    * `method`: the request's method is not one of `methods` (default GET,
      HEAD, OPTIONS: a shadow that shares a database or a payment provider
      with production must not receive writes unless asked);
    * `filter`: the exchange does not match a mitmproxy filter expression
      (`replayer.selecting.eventfilter`).
    """

    def __init__(self, options: SelectOptions) -> None:
        self.options = options
        self._since = options.since_ms
        self._until = options.until_ms
        self._threshold = options.sample_pct / 100.0
        self._methods = options.methods
        self._filter: Callable[[HttpExchange], bool] | None = None
        if options.filter_expr is not None:
            # Imported only when asked for: it loads mitmproxy.
            from replayer.selecting.eventfilter import compile_filter

            self._filter = compile_filter(options.filter_expr)

    def before_decode(self, key: bytes | None, timestamp_ms: int | None) -> str | None:
        """The reason to drop a record by its Kafka metadata, or None to keep it."""
        if self._since is not None or self._until is not None:
            if timestamp_ms is None:
                return OUTSIDE_WINDOW
            if self._since is not None and timestamp_ms < self._since:
                return OUTSIDE_WINDOW
            if self._until is not None and timestamp_ms >= self._until:
                return OUTSIDE_WINDOW
        if self._threshold < 1.0 and sample_point(key) >= self._threshold:
            return SAMPLE
        return None

    def after_decode(self, event: HttpExchange) -> str | None:
        """The reason to drop a decoded event, or None to send it."""
        if self._methods is not None and event["method"].upper() not in self._methods:
            return METHOD
        if self._filter is not None and not self._filter(event):
            return FILTER
        return None
