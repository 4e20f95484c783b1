"""Visible progress: lateness and achieved-rate figures, and `replay range`'s progress bar.

* `Lateness`: how late requests went out compared with their due time on the
  virtual clock (recent percentiles and the maximum), for the progress line;
  the Prometheus histogram is `trafficmirror_replayer_lateness_seconds`
  (`replayer.pipeline`).
* `RateMeter`: requests/s handled over the last few seconds, also exported as
  the gauge `trafficmirror_replayer_rate`.
* `ProgressBar`: on a terminal, one line on stderr redrawn with `\\r` (sent of
  total, rate, lateness, ETA); otherwise the plain periodic log line of
  `replayer.results.summary.Progress`.

The ETA at a recorded pace comes from the schedule (`Scheduler.remaining`: the
recorded time left divided by the speed), since the records handled per second
say nothing across the recording's idle stretches; as fast as possible it
comes from the rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import IO

from prometheus_client import Gauge

RATE = Gauge(
    "trafficmirror_replayer_rate",
    "Records handled per second over the last few seconds (the achieved replay rate).",
)

#: Samples kept for the percentiles of the progress line.
_RECENT = 4096


class Lateness:
    """Lateness samples (seconds after the due time): recent percentiles, count, maximum."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=_RECENT)
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0..1) of the recent samples, or None without any."""
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def text(self) -> str:
        """`late p50 0.3ms p99 1.2ms`, or empty when nothing was timed."""
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        if p50 is None or p99 is None:
            return ""
        return f"late p50 {p50 * 1000:.1f}ms p99 {p99 * 1000:.1f}ms"


class RateMeter:
    """Handled records per second over a sliding window; `update()` often (cheap)."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._points: deque[tuple[float, int]] = deque()
        self.rate = 0.0

    def update(self, handled: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        points = self._points
        if not points or now - points[-1][0] >= 0.25:
            points.append((now, handled))
        while len(points) > 2 and now - points[1][0] >= self.window:
            points.popleft()
        first_at, first = points[0]
        if now > first_at:
            self.rate = (handled - first) / (now - first_at)
        RATE.set(self.rate)
        return self.rate


def eta_from_rate(left: int, rate: float) -> float | None:
    """Seconds for `left` records at `rate` per second (as fast as possible: the rate is
    the pace), or None without a rate yet."""
    return left / rate if rate > 0 else None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar(logging.Filter):
    """One redrawn line on a terminal: `[#####.....] 512/1000 51% 99/s late p99 1.1ms ETA 0:05`.

    While it is drawn, a log line first clears the bar (it is a filter on the
    root logger's handlers: `attach()`/`close()`), so the two never share a line;
    the next `draw()` puts the bar back below it.
    """

    WIDTH = 24

    def __init__(self, stream: IO[str], total: int, interval: float = 0.2) -> None:
        super().__init__()
        self.stream = stream
        self.total = total
        self.interval = interval
        self.meter = RateMeter()
        self._last = 0.0
        self._drawn = False
        self._on_line = False
        self._handlers: list[logging.Handler] = []

    def attach(self) -> ProgressBar:
        """Clear the bar before any log line of the root logger's handlers."""
        self._handlers = list(logging.getLogger().handlers)
        for handler in self._handlers:
            handler.addFilter(self)
        return self

    def filter(self, record: logging.LogRecord) -> bool:
        if self._on_line:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._on_line = False
            self._last = 0.0  # redraw at the next tick
        return True

    def draw(
        self,
        handled: int,
        lateness: Lateness | None,
        force: bool = False,
        eta: float | None = None,
    ) -> None:
        """Redraw (at most every `interval` unless `force`); `eta`: seconds left, when the
        caller knows better than the rate does (the recorded pace: `Scheduler.remaining`)."""
        now = time.monotonic()
        rate = self.meter.update(handled, now)
        if not force and now - self._last < self.interval:
            return
        self._last = now
        total = max(self.total, 1)
        done = min(handled, total)
        filled = self.WIDTH * done // total
        parts = [
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}]",
            f"{handled}/{self.total}",
            f"{100 * done // total}%",
            f"{rate:.0f}/s",
        ]
        late = lateness.text() if lateness is not None else ""
        if late:
            parts.append(late)
        if handled < self.total:
            left = eta if eta is not None else eta_from_rate(self.total - handled, rate)
            if left is not None:
                parts.append(f"ETA {_duration(left)}")
        # Clear to the end of the line: a shorter line must not leave old characters.
        self.stream.write("\r" + " ".join(parts) + "\x1b[K")
        self.stream.flush()
        self._drawn = self._on_line = True

    def close(self) -> None:
        """End the line so what follows starts on its own; detach from the log handlers."""
        for handler in self._handlers:
            handler.removeFilter(self)
        self._handlers = []
        if self._on_line:
            self.stream.write("\n")
            self.stream.flush()
            self._on_line = False
