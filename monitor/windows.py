"""Per-key request counts over a sliding window, and a learned baseline behind it.

Time is recorded time (each exchange's request start), cut into one-second
buckets, so a monitor that catches up on a backlog sees the rates the
traffic had, not the rate it reads at. Each tracked key (a client, an
endpoint, a client×endpoint pair) keeps the counts of the buckets inside the
window (requests, and 401/403/404 responses); a bucket that leaves the
window feeds the baseline, an exponentially weighted mean of per-second
counts with a half-life (`Ewma`), so a burst is always compared with what
came *before* it, never with itself. Keys are kept least-recently-seen
first and the oldest are dropped beyond a maximum, so memory stays bounded
whatever the number of clients.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

#: Status codes a status_burst counts: refused, forbidden, not found (guessing, scanning).
DENIED = (401, 403, 404)
#: Recent exchange ids kept per key, as the evidence an alert points to.
EVIDENCE = 5


@dataclass(slots=True)
class Ewma:
    """A weighted mean of per-bucket counts, each bucket's weight halving every half-life.

    Kept as a weighted sum and the sum of weights, so the first buckets are not
    biased towards zero (the mean of three buckets is their mean), and a run of
    empty buckets is folded in at once (`fold`), with no work per idle second.
    """

    decay: float
    total: float = 0.0
    weight: float = 0.0
    last: int | None = None

    def fold(self, bucket: int, count: float) -> None:
        """Add `count` as the value of `bucket`, the empty buckets since the last one as zeros.

        A bucket at or before the last one (a late record) adds to the last one's value.
        """
        if self.last is not None and bucket <= self.last:
            self.total += count
            return
        if self.last is not None and bucket > self.last + 1:
            gap = bucket - self.last - 1
            shrink = self.decay**gap
            self.total *= shrink
            # The weights of `gap` empty buckets: 1 + d + ... + d^(gap-1), decayed as they go.
            self.weight = self.weight * shrink + (1 - shrink) / (1 - self.decay)
        self.total = self.total * self.decay + count
        self.weight = self.weight * self.decay + 1
        self.last = bucket

    def mean(self) -> float | None:
        """The weighted mean per bucket, None before the first bucket."""
        return self.total / self.weight if self.weight else None


@dataclass(slots=True)
class KeyStats:
    """One key's window (bucket -> [requests, 401, 403, 404]) and baselines."""

    first: int
    requests: Ewma
    denied: Ewma
    buckets: dict[int, list[int]] = field(default_factory=dict)
    evidence: deque[str] = field(default_factory=lambda: deque(maxlen=EVIDENCE))

    def add(self, bucket: int, status: int | None, exchange_id: str) -> None:
        counts = self.buckets.get(bucket)
        if counts is None:
            counts = self.buckets[bucket] = [0, 0, 0, 0]
        counts[0] += 1
        if status in DENIED:
            counts[1 + DENIED.index(status)] += 1
        self.evidence.append(exchange_id)
        if bucket < self.first:
            self.first = bucket

    def slide(self, start: int) -> None:
        """Fold every bucket before `start` (the window's first) into the baselines."""
        old = sorted(b for b in self.buckets if b < start)
        for bucket in old:
            counts = self.buckets.pop(bucket)
            self.requests.fold(bucket, counts[0])
            self.denied.fold(bucket, counts[1] + counts[2] + counts[3])
        # The quiet seconds up to the window count too: a client silent for an hour
        # has a usual rate near zero, not the rate of its last busy minute.
        if self.requests.last is not None and self.requests.last < start - 1:
            self.requests.fold(start - 1, 0)
            self.denied.fold(start - 1, 0)

    def window(self, start: int, end: int) -> list[int]:
        """Totals [requests, 401, 403, 404] of the buckets in [start, end]."""
        sums = [0, 0, 0, 0]
        for bucket, counts in self.buckets.items():
            if start <= bucket <= end:
                for i in range(4):
                    sums[i] += counts[i]
        return sums


class Tracker:
    """Every tracked key's `KeyStats`, least recently seen first, at most `max_keys`."""

    def __init__(self, half_life_seconds: float, max_keys: int) -> None:
        self.decay = math.pow(0.5, 1.0 / half_life_seconds)
        self.max_keys = max_keys
        self.keys: OrderedDict[tuple[str, str], KeyStats] = OrderedDict()
        self.evicted = 0

    def add(
        self, key: tuple[str, str], bucket: int, status: int | None, exchange_id: str
    ) -> KeyStats:
        """Count one request of `key` in `bucket`; returns its stats."""
        stats = self.keys.get(key)
        if stats is None:
            stats = KeyStats(bucket, Ewma(self.decay), Ewma(self.decay))
            self.keys[key] = stats
            if len(self.keys) > self.max_keys:
                self.keys.popitem(last=False)
                self.evicted += 1
        else:
            self.keys.move_to_end(key)
        stats.add(bucket, status, exchange_id)
        return stats

    def get(self, key: tuple[str, str]) -> KeyStats | None:
        return self.keys.get(key)

    def __len__(self) -> int:
        return len(self.keys)
