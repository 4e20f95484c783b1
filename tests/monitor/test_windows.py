"""The baseline arithmetic (`Ewma`) and per-key windows (`KeyStats`, `Tracker`)."""

from __future__ import annotations

import math

import pytest

from monitor.windows import Ewma, KeyStats, Tracker


def test_ewma_is_an_unbiased_mean_at_first() -> None:
    mean = Ewma(decay=0.5)
    for bucket, count in enumerate([4, 4, 4]):
        mean.fold(bucket, count)
    assert mean.mean() == pytest.approx(4.0)


def test_ewma_folds_quiet_buckets_as_zeros_at_once() -> None:
    decay = 0.9
    lazy, step = Ewma(decay), Ewma(decay)
    lazy.fold(0, 10)
    lazy.fold(5, 10)
    for bucket, count in enumerate([10, 0, 0, 0, 0, 10]):
        step.fold(bucket, count)
    assert lazy.mean() == pytest.approx(step.mean())
    assert 0 < (lazy.mean() or 0) < 10


def test_ewma_half_life() -> None:
    tracker = Tracker(half_life_seconds=10, max_keys=10)
    assert tracker.decay**10 == pytest.approx(0.5)
    assert math.isclose(tracker.decay, 0.5 ** (1 / 10))


def test_a_late_bucket_adds_to_the_last_one() -> None:
    mean = Ewma(decay=0.5)
    mean.fold(3, 2)
    mean.fold(2, 2)
    assert mean.mean() == pytest.approx(4.0)


def test_window_counts_denied_statuses_and_slides_into_the_baseline() -> None:
    stats = KeyStats(0, Ewma(0.9), Ewma(0.9))
    for bucket in range(10):
        stats.add(bucket, 200, f"a{bucket}")
    stats.add(10, 401, "x")
    stats.add(10, 404, "y")
    stats.add(11, 403, "z")
    stats.slide(8)
    assert stats.requests.last == 7 and stats.requests.mean() == pytest.approx(1.0)
    assert stats.window(8, 11) == [5, 1, 1, 1]
    assert list(stats.evidence) == ["a8", "a9", "x", "y", "z"]


def test_quiet_seconds_before_the_window_lower_the_baseline() -> None:
    stats = KeyStats(0, Ewma(0.99), Ewma(0.99))
    for bucket in range(5):
        stats.add(bucket, 200, "a")
    stats.slide(100)  # silent from 5 to 99
    assert (stats.requests.mean() or 1) < 0.1


def test_tracker_drops_the_least_recently_seen_key() -> None:
    tracker = Tracker(half_life_seconds=60, max_keys=2)
    tracker.add(("client", "a"), 0, 200, "1")
    tracker.add(("client", "b"), 0, 200, "2")
    tracker.add(("client", "a"), 1, 200, "3")
    tracker.add(("client", "c"), 1, 200, "4")
    assert set(tracker.keys) == {("client", "a"), ("client", "c")}
    assert tracker.evicted == 1
