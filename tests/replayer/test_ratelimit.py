"""The token bucket on fake time: the rate holds, late wake-ups are made good, never a burst."""

from __future__ import annotations

import pytest

from replayer.ratelimit import TokenBucket


def send_all(bucket: TokenBucket, count: int, start: float, jitter: float = 0.0) -> list[float]:
    """Send `count` requests as soon as allowed, each woken `jitter` seconds late."""
    now, sent = start, []
    for _ in range(count):
        now = max(now, bucket.ready_at() + jitter)
        bucket.take(now)
        sent.append(now)
    return sent


def test_rate_is_held_from_the_first_request_without_a_burst() -> None:
    bucket = TokenBucket(100.0, now=50.0)
    sent = send_all(bucket, 500, 50.0)
    assert sent[0] == 50.0
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.01)
    assert sent[-1] - sent[0] == pytest.approx(4.99)


def test_late_wake_ups_do_not_lower_the_long_run_rate() -> None:
    bucket = TokenBucket(1000.0, now=0.0)
    sent = send_all(bucket, 5000, 0.0, jitter=0.0008)
    # Every wake-up is 0.8 ms late at 1 ms intervals; the tolerance makes it good.
    assert (len(sent) - 1) / (sent[-1] - sent[0]) == pytest.approx(1000.0, rel=0.01)


def test_an_idle_bucket_saves_up_at_most_its_burst() -> None:
    bucket = TokenBucket(100.0, now=0.0, burst=3)
    send_all(bucket, 10, 0.0)
    later = 100.0
    allowed_at_once = 0
    while bucket.ready_at() <= later + 1e-9:
        bucket.take(later)
        allowed_at_once += 1
    assert allowed_at_once == 3


def test_a_rate_change_applies_to_the_next_request() -> None:
    bucket = TokenBucket(10.0, now=0.0, burst=1)
    bucket.take(0.0)
    assert bucket.ready_at() == pytest.approx(0.1)
    bucket.set_rate(100.0, now=0.0, burst=1)
    assert bucket.ready_at() == pytest.approx(0.01)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0, now=0.0)
