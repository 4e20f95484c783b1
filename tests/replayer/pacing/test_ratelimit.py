"""The token bucket on fake time: the rate holds, stalls are made good, idling saves no burst."""

from __future__ import annotations

import pytest

from replayer.pacing.ratelimit import TokenBucket


def send_backlog(
    bucket: TokenBucket,
    count: int,
    start: float,
    late: float = 0.0,
    stall_at: int = -1,
    stall: float = 0.0,
) -> list[float]:
    """Send `count` requests all waiting since `start`, each woken `late` seconds late."""
    now, sent = start, []
    for n in range(count):
        now = max(now, bucket.ready_at(start) + late)
        if n == stall_at:
            now += stall
        bucket.take(now, start)
        sent.append(now)
    return sent


def test_rate_is_held_from_the_first_request_without_a_burst() -> None:
    bucket = TokenBucket(100.0, now=50.0)
    sent = send_backlog(bucket, 500, 50.0)
    assert sent[0] == 50.0
    assert sent[1] == 50.0  # the default burst of 2
    gaps = [b - a for a, b in zip(sent[1:], sent[2:], strict=False)]
    assert min(gaps) == pytest.approx(0.01)
    assert sent[-1] - sent[0] == pytest.approx(4.98)


def test_late_wake_ups_do_not_lower_the_long_run_rate() -> None:
    bucket = TokenBucket(1000.0, now=0.0)
    sent = send_backlog(bucket, 5000, 0.0, late=0.0008)
    assert (len(sent) - 1) / (sent[-1] - sent[0]) == pytest.approx(1000.0, rel=0.01)


def test_a_stall_is_made_good_up_to_catch_up() -> None:
    bucket = TokenBucket(100.0, now=0.0, catch_up=0.5)
    sent = send_backlog(bucket, 500, 0.0, stall_at=100, stall=0.4)
    assert sent[-1] == pytest.approx(4.98)  # as without the stall
    longer = TokenBucket(100.0, now=0.0, catch_up=0.5)
    sent = send_backlog(longer, 500, 0.0, stall_at=100, stall=0.9)
    assert sent[-1] == pytest.approx(4.98 + 0.4)  # 0.5 s made good, not more


def test_an_idle_bucket_saves_up_at_most_its_burst() -> None:
    bucket = TokenBucket(100.0, now=0.0, burst=3)
    send_backlog(bucket, 10, 0.0)
    later = 100.0  # a crowd of requests all ready at once after idling
    allowed_at_once = 0
    while bucket.ready_at(later) <= later + 1e-9:
        bucket.take(later, later)
        allowed_at_once += 1
    assert allowed_at_once == 3
    assert bucket.ready_at(later) == pytest.approx(later + 0.01)


def test_a_rate_change_applies_to_the_next_request() -> None:
    bucket = TokenBucket(10.0, now=0.0, burst=1)
    bucket.take(0.0, 0.0)
    assert bucket.ready_at(0.0) == pytest.approx(0.1)
    bucket.set_rate(100.0, now=0.0)
    assert bucket.ready_at(0.0) == pytest.approx(0.01)  # one new interval after the last
    bucket.take(0.01, 0.0)
    assert bucket.ready_at(0.0) == pytest.approx(0.02)
    bucket.set_rate(1.0, now=0.01)
    assert bucket.ready_at(0.0) == pytest.approx(1.01)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0, now=0.0)
