"""Counters read from the steps' counts at scrape time: exact, and never going down."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from prometheus_client import REGISTRY, generate_latest

from replayer.transforming.correlation import Correlation
from replayer.transforming.tally import Tally


@dataclass
class Counts:
    hits: int = 0
    misses: int = 0


class Owner:
    def __init__(self, tally: Tally) -> None:
        self.counts = Counts()
        tally.track(self, self.counts)


def sample(outcome: str) -> float | None:
    return REGISTRY.get_sample_value("tm_test_tally_total", {"outcome": outcome})


def test_counts_are_summed_when_scraped_and_kept_after_their_owner_is_gone() -> None:
    tally = Tally("tm_test_tally", "Test.", "outcome", {"hit": "hits", "miss": "misses"})
    try:
        a, b = Owner(tally), Owner(tally)
        assert (sample("hit"), sample("miss")) == (0.0, 0.0)
        a.counts.hits += 3
        b.counts.hits += 2
        b.counts.misses += 1
        assert (sample("hit"), sample("miss")) == (5.0, 1.0)
        del a
        gc.collect()
        b.counts.hits += 1
        assert (sample("hit"), sample("miss")) == (6.0, 1.0)  # a's 3 are kept
        assert b'tm_test_tally_total{outcome="hit"} 6.0' in generate_latest(REGISTRY)
    finally:
        REGISTRY.unregister(tally)


def test_the_steps_report_through_it() -> None:
    before = REGISTRY.get_sample_value(
        "trafficmirror_replayer_correlation_values_total", {"event": "learned"}
    )
    correlation = Correlation(())
    correlation.counts.learned += 2
    after = REGISTRY.get_sample_value(
        "trafficmirror_replayer_correlation_values_total", {"event": "learned"}
    )
    assert before is not None and after == before + 2
