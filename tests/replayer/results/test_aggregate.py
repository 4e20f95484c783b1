"""Idempotent aggregation of replay results per endpoint."""

from __future__ import annotations

import pytest

from replayer.comparing.responses import Difference, ResponseView
from replayer.results.aggregate import Aggregate, aggregate_path, percentile
from tests.replayer.results.test_build import NAME, TS, mirror_result, result

PRICE3 = Difference("body_json", "$.items[3].price", "1", "2")


def test_aggregate_counts_mirror_captures_apart() -> None:
    agg = Aggregate()
    agg.add(mirror_result("m-1"))
    agg.add(mirror_result("m-2", baseline_target="b", baseline=ResponseView(201)))
    agg.add(
        mirror_result(
            "m-3",
            baseline_target="b",
            baseline=ResponseView(200),
            differences=(Difference("status", "status", "200", "201"),),
        )
    )
    agg.add(result("proxy-1"))
    total = agg.total()
    assert (total.requests, total.unverified, total.vs_baseline) == (4, 1, 2)
    # Unverified is neither compared nor skipped; the two vs baseline are compared.
    assert (total.matches, total.mismatches, total.skipped, total.compared) == (2, 1, 0, 3)
    assert total.mismatch_rate() == pytest.approx(1 / 3)


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5], 99) == 5
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 95) == 95
    assert percentile([3, 1, 2], 100) == 3


def test_aggregate_counts_per_endpoint() -> None:
    agg = Aggregate()
    agg.add(result("a", path=b"/users/1"))
    agg.add(result("b", (NAME, PRICE3), path=b"/users/2"))
    agg.add(result("c", (TS,), path=b"/users/3"))
    agg.add(result("d", shadow_status=None, path=b"/users/4"))
    agg.add(result("e", (Difference("status", "status", "200", "500"),), path=b"/orders/9"))
    agg.add(result("f", path=b"/orders/10", skipped="truncated"))
    users, orders = agg.endpoints()[1], agg.endpoints()[0]
    assert orders.endpoint == "GET /orders/{id}" and orders.mismatch_rate() == 1.0
    assert (orders.requests, orders.skipped, orders.compared) == (2, 1, 1)
    assert users.endpoint == "GET /users/{id}"
    assert (users.requests, users.matches, users.mismatches, users.errors) == (4, 2, 1, 1)
    assert users.noise_only == 1
    assert users.mismatch_rate() == pytest.approx(1 / 3)
    assert users.mismatch_rate("body_json") == pytest.approx(1 / 3)
    assert users.mismatch_rate("status") == 0
    assert sorted(users.top_paths()) == [
        ("body_json", "$.items[*].price", 1),
        ("body_json", "$.user.name", 1),
    ]
    assert len(users.production_us) == 4 and len(users.shadow_us) == 3
    assert users.latency_ms("production", 50) == 25.0
    assert users.latency_ms("shadow", 99) == 10.0
    total = agg.total()
    assert (total.requests, total.mismatches) == (6, 2)


def test_the_same_exchange_twice_counts_once_last_wins() -> None:
    agg = Aggregate()
    assert agg.add(result("a", (NAME,)))
    assert agg.add(result("b"))
    assert not agg.add(result("a", (NAME,)))  # redelivered, same outcome
    (stats,) = agg.endpoints()
    assert (stats.requests, stats.mismatches, len(stats.shadow_us)) == (2, 1, 2)
    assert agg.duplicates == 1 and len(agg) == 2
    # A later replay of "a" that matches replaces the mismatch, example included.
    agg.add(result("a"))
    (stats,) = agg.endpoints()
    assert (stats.requests, stats.mismatches, stats.matches) == (2, 0, 2)
    assert agg.examples() == {}


def test_runs_are_kept_apart() -> None:
    agg = Aggregate()
    agg.add(result("a", run_id="build-1"))
    agg.add(result("a", run_id="build-2"))
    assert len(agg) == 2 and agg.duplicates == 0
    assert agg.runs == {"build-1": 1, "build-2": 1}


def test_examples_are_capped_per_endpoint() -> None:
    agg = Aggregate(examples_per_endpoint=2)
    for i in range(5):
        agg.add(result(f"x{i}", (NAME,)))
    examples = agg.examples()
    assert list(examples) == ["GET /users/{id}"]
    assert [r["id"] for r in examples["GET /users/{id}"]] == ["x0", "x1"]


def test_aggregate_path() -> None:
    assert aggregate_path("body_json", "$.a[3].b[10]") == "$.a[*].b[*]"
    assert aggregate_path("body_text", "line 3") == "line 3"
