"""What a replay did so far: counts per kind and partition, and the periodic progress line.

`Stats` is the one tally of a run (the pipeline adds every handled record to
it; `worker` and `replay range` print its `line()` when they stop, and
`replay range` its per-partition counts). `Progress` logs that line every few
seconds while the replay runs, with the achieved rate, lateness and, for a
fixed range, an ETA. Prometheus metrics are process-wide and live with the
code that counts them; these are per run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field

from replayer.models import Record, Result
from replayer.pacing.amplify import CopyCounts
from replayer.pacing.progress import Lateness, RateMeter, eta_from_rate

logger = logging.getLogger(__name__)


@dataclass
class PartitionCounts:
    """Per-partition tallies for the range summary."""

    consumed: int = 0
    sent: int = 0
    errors: int = 0
    skipped: int = 0
    undecodable: int = 0
    first: int | None = None
    last: int | None = None


@dataclass
class Stats:
    """What a replay did so far; one object per run (metrics are process-wide)."""

    consumed: int = 0
    sent: int = 0
    #: Of `sent`: mirror captures, which have no production response to compare with.
    no_production: int = 0
    errors: int = 0
    undecodable: int = 0
    skipped: Tally[str] = field(default_factory=Tally)
    partitions: dict[int, PartitionCounts] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    lateness: Lateness = field(default_factory=Lateness)
    #: Extra copies sent by --amplify (not in `sent`: they are not records).
    copies: CopyCounts = field(default_factory=CopyCounts)
    #: Records of WebSocket sessions after their upgrade, by what they were: a
    #: client-message sent, a server-message kept as expected, an end.
    websocket: Tally[str] = field(default_factory=Tally)

    @property
    def handled(self) -> int:
        return (
            self.sent
            + self.errors
            + self.undecodable
            + sum(self.skipped.values())
            + sum(self.websocket.values())
        )

    def read(self, record: Record) -> None:
        self.consumed += 1
        part = self.partitions.get(record.partition)
        if part is None:
            part = self.partitions[record.partition] = PartitionCounts()
        part.consumed += 1
        if part.first is None or record.offset < part.first:
            part.first = record.offset
        if part.last is None or record.offset > part.last:
            part.last = record.offset

    def add(self, result: Result) -> None:
        part = self.partitions.setdefault(result.record.partition, PartitionCounts())
        if result.kind == "sent":
            self.sent += 1
            part.sent += 1
        elif result.kind == "error":
            self.errors += 1
            part.errors += 1
        elif result.kind == "undecodable":
            self.undecodable += 1
            part.undecodable += 1
        elif result.kind == "websocket":
            self.websocket[result.detail or "message"] += 1
            part.sent += 1
        else:
            self.skipped[result.detail or "other"] += 1
            part.skipped += 1

    def line(self) -> str:
        """`consumed N, sent N, errors N, skipped-truncated N, ..., undecodable N`.

        `sent N (no production response M)` when M of them were mirror captures.
        """
        sent = f"sent {self.sent}"
        if self.no_production:
            sent += f" (no production response {self.no_production})"
        parts = [f"consumed {self.consumed}", sent, f"errors {self.errors}"]
        parts.append(f"skipped-truncated {self.skipped.get('truncated', 0)}")
        for reason, count in sorted(self.skipped.items()):
            if reason != "truncated":
                parts.append(f"skipped-{reason} {count}")
        parts.append(f"undecodable {self.undecodable}")
        if self.websocket:
            ws = self.websocket
            parts.append(
                f"websocket messages: client {ws['client-message']} sent, "
                f"server {ws['server-message']} expected, ends {ws['end']}"
            )
        if self.copies.sent or self.copies.errors or self.copies.skipped:
            parts.append(self.copies.text())
        return ", ".join(parts)


class Progress:
    """Logs a progress line every `interval` seconds (call `tick()` often; it is cheap).

    An idle stretch (nothing handled, nothing in flight) logs nothing, so an idle
    worker does not fill its log with identical lines. Every tick also updates
    the achieved-rate gauge (`replayer.pacing.progress.RateMeter`).
    """

    def __init__(
        self,
        stats: Stats,
        interval: float = 10.0,
        total: int | None = None,
        eta: Callable[[], float | None] | None = None,
    ) -> None:
        self.stats = stats
        self.interval = interval
        self.total = total
        #: Seconds left by the schedule (a recorded pace), instead of from the rate.
        self.eta = eta
        self._last_at = time.monotonic()
        self._last_handled = 0
        self.meter = RateMeter()

    def tick(self, in_flight: int, extra: str = "") -> None:
        now = time.monotonic()
        self.meter.update(self.stats.handled, now)
        if now - self._last_at < self.interval:
            return
        handled = self.stats.handled
        rate = (handled - self._last_handled) / (now - self._last_at)
        idle = handled == self._last_handled and in_flight == 0
        self._last_at, self._last_handled = now, handled
        if idle:
            return
        of = f"/{self.total}" if self.total is not None else ""
        late = self.stats.lateness.text()
        if self.total is not None and handled < self.total:
            left = self.eta() if self.eta is not None else None
            if left is None:
                left = eta_from_rate(self.total - handled, rate)
            if left is not None:
                late += f"{', ' if late else ''}ETA {left:.0f}s"
        logger.info(
            "progress: handled %d%s (%.0f/s), %s, in flight %d%s%s",
            handled,
            of,
            rate,
            self.stats.line(),
            in_flight,
            f", {late}" if late else "",
            extra,
        )
