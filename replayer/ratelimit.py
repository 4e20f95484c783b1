"""A token bucket that delays requests to a rate ceiling and never drops one.

Implemented as GCRA (the "virtual scheduling" form of a token bucket): the
bucket keeps the theoretical time of the next send, `tat`, and advances it by
`1 / rate` per request. A request may go at `tat - tolerance`, where the
tolerance is `burst - 1` intervals: so a sender that wakes up a little late
(timer jitter) may catch up by that much, and the long-run rate stays exactly
`rate` instead of drifting below it; a sender that was idle cannot save up more
than `burst` requests.

Pure arithmetic on a caller-supplied clock (seconds), so it is tested with fake time.
"""

from __future__ import annotations


def default_burst(rate: float) -> float:
    """Requests that may go back to back: 20 ms worth of the rate, at least 2.

    Two, so one late wake-up is made good at once; 20 ms, because asyncio
    timers on a busy machine are late by a few ms, and at 1000 requests/s one
    interval is 1 ms.
    """
    return max(2.0, rate * 0.02)


class TokenBucket:
    """Requests per second ceiling: `ready_at()` says when the next may go, `take()` spends."""

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        if not rate > 0:
            raise ValueError("rate must be above 0")
        self._rate = rate
        self._burst = burst if burst is not None else default_burst(rate)
        # Start with the tolerance already used: the first request goes at once,
        # the next ones at the rate, without an initial burst.
        self._tat = now + self._tolerance

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self._rate

    @property
    def _interval(self) -> float:
        return 1.0 / self._rate

    @property
    def _tolerance(self) -> float:
        return (self._burst - 1.0) * self._interval

    def ready_at(self) -> float:
        """The earliest time (same clock as `now`) at which the next request may go."""
        return self._tat - self._tolerance

    def take(self, now: float) -> None:
        """Spend one token for a request sent at `now` (at or after `ready_at()`)."""
        self._tat = max(self._tat, now) + self._interval

    def set_rate(self, rate: float, now: float, burst: float | None = None) -> None:
        """Change the rate; the requests already owed keep their place in time at the new rate."""
        if not rate > 0:
            raise ValueError("rate must be above 0")
        owed = max(self._tat - now, 0.0) * self._rate  # in requests
        self._rate = rate
        self._burst = burst if burst is not None else default_burst(rate)
        self._tat = now + owed * self._interval
