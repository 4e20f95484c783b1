"""The rate rules on synthetic traffic in recorded time (no Kafka: `RateRules` alone)."""

from __future__ import annotations

import random

from monitor.anomalies import RateRules
from monitor.config import Thresholds
from monitor.findings import Finding

US = 1_000_000
T0 = 1_760_000_000 * US


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(
    rules: RateRules,
    client: str,
    endpoint: str,
    per_second: float,
    start: float,
    seconds: float,
    status: int = 200,
) -> list[tuple[float, Finding]]:
    """Requests spread evenly; returns (recorded second of the record that raised it, finding)."""
    out: list[tuple[float, Finding]] = []
    count = int(per_second * seconds)
    for i in range(count):
        at = start + i / per_second
        for finding in rules.observe(client, endpoint, T0 + int(at * US), status, f"{client}-{i}"):
            out.append((at, finding))
    return out


def test_a_client_at_20x_its_usual_rate_is_an_alert_within_10s_with_the_defaults() -> None:
    rules = RateRules(Thresholds())
    usual = feed(rules, "addr:10.0.0.1", "GET /items/{id}", 2, 0, 120)
    assert usual == []
    burst = feed(rules, "addr:10.0.0.1", "GET /items/{id}", 40, 120, 15)
    kinds = {f.kind: at for at, f in burst}
    assert "client_rate" in kinds, burst
    assert kinds["client_rate"] - 120 <= 10
    alert = next(f for _, f in burst if f.kind == "client_rate")
    assert alert.client == "addr:10.0.0.1" and alert.endpoint is None
    assert alert.baseline_rate is not None and 1.5 < alert.baseline_rate < 2.5
    assert alert.observed_rate is not None and alert.observed_rate >= 10 * alert.baseline_rate
    assert len(alert.exchange_ids) == 5
    # One alert per kind and key while the burst goes on (the cooldown).
    assert sum(1 for _, f in burst if f.kind == "client_rate") == 1


def test_an_endpoint_at_20x_its_usual_rate_is_an_alert_within_10s_with_the_defaults() -> None:
    rules = RateRules(Thresholds())
    clients = [f"addr:10.0.1.{i}" for i in range(10)]
    usual = [hit for c in clients for hit in feed(rules, c, "GET /search", 0.2, 0, 120)]
    assert usual == []
    burst: list[tuple[float, Finding]] = []
    for second in range(15):  # the same clients, 20x as often each, interleaved
        for client in clients:
            burst += feed(rules, client, "GET /search", 4, 120 + second, 1)
    found = [(at, f) for at, f in burst if f.kind == "endpoint_rate"]
    assert found, burst
    at, alert = found[0]
    assert at - 120 <= 10
    assert alert.endpoint == "GET /search" and alert.client is None
    assert alert.baseline_rate is not None and 1.5 < alert.baseline_rate < 2.5
    assert alert.observed_rate is not None and alert.observed_rate >= 10 * alert.baseline_rate
    assert len(found) == 1  # one alert per key while the burst goes on


def test_ordinary_traffic_raises_nothing() -> None:
    rng = random.Random(3)
    rules = RateRules(Thresholds())
    found: list[Finding] = []
    clients = [f"addr:10.0.0.{i}" for i in range(20)]
    endpoints = [f"GET /e{i}/{{id}}" for i in range(8)]
    for second in range(900):
        for client in clients:
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                at = T0 + second * US + rng.randrange(US)
                status = rng.choice([200] * 30 + [404])
                found += rules.observe(client, rng.choice(endpoints), at, status, "x")
    assert found == []


def test_a_client_that_was_not_warm_is_not_judged_by_rate() -> None:
    rules = RateRules(Thresholds())
    found = feed(rules, "addr:10.0.0.9", "GET /a", 1, 0, 5)
    found += feed(rules, "addr:10.0.0.9", "GET /a", 40, 5, 5)
    assert not [f for _, f in found if f.kind.endswith("_rate")]


def test_a_burst_of_404s_from_a_new_client() -> None:
    rules = RateRules(Thresholds())
    found = feed(rules, "addr:10.0.0.7", "GET /admin/{id}", 8, 0, 5, status=404)
    found += feed(rules, "addr:10.0.0.7", "GET /", 1, 5, 3)
    bursts = [f for _, f in found if f.kind == "status_burst"]
    assert len(bursts) == 1
    assert bursts[0].statuses[0][0] == 404 and bursts[0].statuses[0][1] >= 20


def test_a_new_client_hammering_one_endpoint_but_not_one_browsing() -> None:
    rules = RateRules(Thresholds())
    found = feed(rules, "addr:10.0.0.5", "POST /login", 20, 0, 5)
    found += feed(rules, "addr:10.0.0.5", "GET /", 1, 5, 3)
    assert [f.kind for _, f in found] == ["new_client_hammering"]
    hammer = found[0][1]
    assert hammer.client == "addr:10.0.0.5" and hammer.endpoint == "POST /login"
    browsing: list[tuple[float, Finding]] = []
    for i in range(5):
        browsing += feed(rules, "addr:10.0.0.6", f"GET /page{i}", 4, 0, 5)
    browsing += feed(rules, "addr:10.0.0.6", "GET /", 1, 5, 3)
    assert browsing == []


def test_quiet_traffic_closes_the_last_seconds_by_the_wall_clock() -> None:
    clock = Clock()
    rules = RateRules(Thresholds(), clock=clock)
    found = feed(rules, "addr:10.0.0.5", "POST /login", 100, 0, 1)
    assert found == []  # its second is still open: nothing newer arrived
    clock.now = 0.5
    assert rules.tick() == []
    clock.now = 3.0
    assert [f.kind for f in rules.tick()] == ["new_client_hammering"]
