"""Prometheus counters read from the steps' own counts when scraped, not bumped per request.

A `prometheus_client` counter takes a lock on every `inc()`, which costs more
than what a cached JWT or a replaced ID does on a hot path. `Tally` is a
collector: each step keeps plain integer counts (a dataclass), registers
them with `track()`, and a scrape sums the fields of every step alive plus
what steps already garbage-collected had counted, so the counter never goes
down. Used by the credentials, JWT re-sign and correlation steps.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Tally(Collector):
    """One counter family `name{label=...}`; each label value is a field of the counts."""

    def __init__(self, name: str, documentation: str, label: str, fields: Mapping[str, str]):
        self.name = name
        self.documentation = documentation
        self.label = label
        #: label value → the name of the counts field it reads.
        self.fields = dict(fields)
        #: id → counts of the owners alive (counts are dataclasses: not hashable).
        self._live: dict[int, Any] = {}
        self._gone = dict.fromkeys(self.fields, 0)
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def track(self, owner: object, counts: object) -> None:
        """Count `counts` (read at each scrape) as long as `owner` lives, and for good after."""
        with self._lock:
            self._live[id(counts)] = counts
        weakref.finalize(owner, self._retire, counts)

    def _retire(self, counts: object) -> None:
        with self._lock:
            for value, field in self.fields.items():
                self._gone[value] += getattr(counts, field)
            self._live.pop(id(counts), None)

    def total(self, value: str) -> int:
        """The counter's value for one label value now."""
        field = self.fields[value]
        with self._lock:
            live: int = sum(getattr(c, field) for c in self._live.values())
            return self._gone[value] + live

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value in self.fields:
            family.add_metric([value], float(self.total(value)))
        yield family
