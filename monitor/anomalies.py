"""The rate rules: per client, endpoint and pair, each closed second, against the baseline.

`RateRules.observe()` counts one exchange for its client, its endpoint and
the pair (`monitor.windows`), and advances recorded time: a second is judged
once records `lateness_seconds` newer than its end have arrived (or, when
the traffic goes quiet, once as much wall-clock time has passed: `tick()`).
Then every key that had a request in that second is checked, over the window
that ends with it:

* client_rate / endpoint_rate: a key with `warmup_seconds` of history whose
  window rate is `rate_factor` × its usual rate, and `rate_min_requests` at least;
* status_burst: `status_burst_min` 401/403/404 to one client in the window,
  and `status_burst_factor` × its usual rate of them when it has a history;
* new_client_hammering: a client first seen under `new_client_seconds` ago
  sending `hammer_min_requests` to one endpoint, `hammer_share` of its requests.

An alert of one kind for one key is raised again only after `cooldown_seconds`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from monitor.config import Thresholds
from monitor.findings import Finding, Source
from monitor.windows import DENIED, KeyStats, Tracker

_US = 1_000_000

Key = tuple[str, str]


class RateRules:
    """Counts exchanges and judges each closed second (see the module doc)."""

    def __init__(self, thresholds: Thresholds, clock: Callable[[], float] = time.monotonic) -> None:
        self.t = thresholds
        self.width = max(1, math.ceil(thresholds.window_seconds))
        self.tracker = Tracker(thresholds.baseline_half_life_seconds, thresholds.max_keys)
        self._clock = clock
        self._active: dict[int, set[Key]] = {}
        self._sources: dict[Key, Source] = {}
        self._cooldown: dict[tuple[str, Key], int] = {}
        self._newest_us: int | None = None
        self._last_record = clock()
        self._closed_before = 0  # every second before this one has been judged

    def observe(
        self,
        client: str,
        endpoint: str,
        start_us: int,
        status: int | None,
        exchange_id: str,
        source: Source | None = None,
    ) -> list[Finding]:
        """Count one exchange; returns the findings of the seconds this closes."""
        bucket = start_us // _US
        keys: tuple[Key, ...] = (
            ("client", client),
            ("endpoint", endpoint),
            ("pair", f"{client}\x00{endpoint}"),
        )
        active = self._active.setdefault(bucket, set())
        for key in keys:
            self.tracker.add(key, bucket, status, exchange_id)
            active.add(key)
            if source is not None:
                self._sources[key] = source
        if self._newest_us is None or start_us > self._newest_us:
            self._newest_us = start_us
        self._last_record = self._clock()
        return self._advance(self._newest_us)

    def tick(self) -> list[Finding]:
        """Let recorded time follow the wall clock while no record comes (quiet traffic)."""
        if self._newest_us is None:
            return []
        idle = self._clock() - self._last_record
        if idle <= self.t.lateness_seconds:
            return []
        return self._advance(self._newest_us + int(idle * _US))

    def _advance(self, now_us: int) -> list[Finding]:
        limit = (now_us - int(self.t.lateness_seconds * _US)) // _US
        due = sorted(b for b in self._active if b < limit)
        findings: list[Finding] = []
        for bucket in due:
            keys = self._active.pop(bucket)
            for key in sorted(keys):
                findings.extend(self._judge(key, bucket))
        if len(self._sources) > 2 * self.t.max_keys:
            self._sources = {k: v for k, v in self._sources.items() if k in self.tracker.keys}
        if len(self._cooldown) > 2 * self.t.max_keys:
            horizon = limit - self.t.cooldown_seconds
            self._cooldown = {k: v for k, v in self._cooldown.items() if v >= horizon}
        return findings

    # -- rules ----------------------------------------------------------------------

    def _judge(self, key: Key, bucket: int) -> list[Finding]:
        stats = self.tracker.get(key)
        if stats is None:  # evicted meanwhile
            return []
        start = bucket - self.width + 1
        stats.slide(start)
        sums = stats.window(start, bucket)
        scope, name = key
        found: list[Finding] = []
        if scope in ("client", "endpoint"):
            rate = self._rate_rule(scope, name, stats, sums, start, bucket)
            if rate is not None:
                found.append(rate)
        if scope == "client":
            burst = self._status_rule(name, stats, sums, start, bucket)
            if burst is not None:
                found.append(burst)
        if scope == "pair":
            hammer = self._hammer_rule(name, sums, start, bucket)
            if hammer is not None:
                found.append(hammer)
        return [f for f in found if self._fresh(f.kind, key, bucket)]

    def _warm(self, stats: KeyStats, start: int) -> bool:
        return stats.first <= start - self.t.warmup_seconds

    def _rate_rule(
        self, scope: str, name: str, stats: KeyStats, sums: list[int], start: int, end: int
    ) -> Finding | None:
        count = sums[0]
        usual = stats.requests.mean()
        if count < self.t.rate_min_requests or usual is None or not self._warm(stats, start):
            return None
        rate = count / self.width
        if rate < self.t.rate_factor * usual:
            return None
        what = f"client {name}" if scope == "client" else f"endpoint {name}"
        times = f"{rate / usual:.0f}x" if usual > 0 else "from nothing"
        return self._finding(
            f"{scope}_rate",
            f"{what}: {rate:.1f} requests/s over {self.width}s, {times} its usual {usual:.2f}/s",
            (scope, name),
            stats,
            start,
            end,
            client=name if scope == "client" else None,
            endpoint=name if scope == "endpoint" else None,
            count=count,
            observed_rate=rate,
            baseline_rate=usual,
        )

    def _status_rule(
        self, client: str, stats: KeyStats, sums: list[int], start: int, end: int
    ) -> Finding | None:
        denied = sums[1] + sums[2] + sums[3]
        if denied < self.t.status_burst_min:
            return None
        usual = stats.denied.mean()
        rate = denied / self.width
        if self._warm(stats, start) and usual is not None:
            if rate < self.t.status_burst_factor * usual:
                return None
        statuses = tuple(
            sorted(
                ((code, n) for code, n in zip(DENIED, sums[1:], strict=True) if n),
                key=lambda pair: -pair[1],
            )
        )
        mix = ", ".join(f"{n}x{code}" for code, n in statuses)
        return self._finding(
            "status_burst",
            f"client {client}: {mix} of {sums[0]} responses in {self.width}s",
            ("client", client),
            stats,
            start,
            end,
            client=client,
            count=sums[0],
            observed_rate=rate,
            baseline_rate=usual if self._warm(stats, start) else None,
            statuses=statuses,
        )

    def _hammer_rule(self, pair: str, sums: list[int], start: int, end: int) -> Finding | None:
        count = sums[0]
        if count < self.t.hammer_min_requests:
            return None
        client, _, endpoint = pair.partition("\x00")
        owner = self.tracker.get(("client", client))
        pair_stats = self.tracker.get(("pair", pair))
        if owner is None or pair_stats is None:
            return None
        if end - owner.first >= self.t.new_client_seconds:
            return None
        total = owner.window(start, end)[0]
        if total == 0 or count / total < self.t.hammer_share:
            return None
        age = end - owner.first + 1
        return self._finding(
            "new_client_hammering",
            f"new client {client} (first seen {age}s ago): {count} of its {total} requests "
            f"in {self.width}s to {endpoint}",
            ("pair", pair),
            pair_stats,
            start,
            end,
            client=client,
            endpoint=endpoint,
            count=count,
            observed_rate=count / self.width,
        )

    # -- helpers --------------------------------------------------------------------

    def _finding(
        self,
        kind: str,
        message: str,
        key: Key,
        stats: KeyStats,
        start: int,
        end: int,
        **fields: object,
    ) -> Finding:
        return Finding(
            kind=kind,
            severity="warning",
            message=message,
            window_start_us=start * _US,
            window_end_us=(end + 1) * _US,
            exchange_ids=tuple(stats.evidence),
            source=self._sources.get(key),
            **fields,  # type: ignore[arg-type]
        )

    def _fresh(self, kind: str, key: Key, bucket: int) -> bool:
        """True (and the cooldown starts) unless `kind` was raised for `key` recently."""
        last = self._cooldown.get((kind, key))
        if last is not None and bucket - last < self.t.cooldown_seconds:
            return False
        self._cooldown[(kind, key)] = bucket
        return True
