"""A token bucket that delays requests to a rate ceiling and never drops one.

Implemented as GCRA (the "virtual scheduling" form of a token bucket): the
bucket keeps the theoretical time of the next send, `tat`, and advances it by
`1 / rate` per request. Two tolerances tell an idle bucket from one that fell
behind (`TokenBucket`), so a replay that resumes after a quiet stretch goes out
at the rate, not in a burst, while one that stalled may catch up a little.
Pure arithmetic on a caller-supplied clock (seconds), tested with fake time.
"""

from __future__ import annotations

#: Seconds of sending a bucket that fell behind may make up (see the module docstring).
CATCH_UP = 0.5
#: Requests an idle bucket saves up.
BURST = 2.0


class TokenBucket:
    """Requests/s ceiling: `ready_at(arrived)` says when a request may go, `take()` spends.

    A request may go earlier than one interval after the previous one for two
    reasons, each with its own tolerance:

    * idle: requests that were not there could not be sent; a bucket saves up
      at most `burst` of them (default 2), so a replay that resumes after a
      quiet stretch, or a crowd of exchanges due at the same instant, goes out
      at the rate, not in a burst;
    * behind: requests that were waiting but went late (the process was not
      scheduled, a timer fired late, garbage collection) may catch up by at
      most `catch_up` seconds' worth, so the long-run rate stays `rate`
      instead of losing every stall. A busy machine stalls a process for up
      to several hundred milliseconds, hence the default of 0.5 s.

    Each request says when it was ready to go (`arrived`: its due time, or
    when it was handed over); that is what tells idle from behind.
    """

    def __init__(
        self, rate: float, now: float, burst: float = BURST, catch_up: float = CATCH_UP
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be above 0")
        if burst < 1 or catch_up < 0:
            raise ValueError("burst must be at least 1 and catch_up at least 0")
        self._burst = burst
        self._catch_up = catch_up
        self._rate = rate
        self._tat = now + self._catch - self._idle  # as after a long idle stretch

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self._rate

    @property
    def _interval(self) -> float:
        return 1.0 / self._rate

    @property
    def _idle(self) -> float:
        return (self._burst - 1.0) * self._interval

    @property
    def _catch(self) -> float:
        return max(self._catch_up, self._idle)

    def ready_at(self, arrived: float) -> float:
        """The earliest time at which a request ready since `arrived` may go."""
        return max(self._tat - self._catch, arrived - self._idle)

    def take(self, now: float, arrived: float) -> None:
        """Spend one token for a request ready since `arrived`, sent at `now`."""
        self._tat = max(self._tat, arrived + self._catch - self._idle, now) + self._interval

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate: the next request goes one new interval after the previous one."""
        if not rate > 0:
            raise ValueError("rate must be above 0")
        previous = self._tat - self._catch - self._interval
        self._rate = rate
        self._tat = max(previous + self._interval, now - self._idle) + self._catch
