"""The recorder's accounting: what became of every exchange it saw, and the summary line.

`seen` counts the exchanges the recorder took for recording: those that ended
(response or error) and those the stop cut off (`cut_off`, recorded with an
error saying so), once the filter kept them; `filtered` counts, beside it, the
ones the filter left out. Each seen exchange ends in exactly one bucket, so
once the producer is flushed `seen = recorded + dropped + failed` holds
exactly (while it runs, the difference is still queued for Kafka). WebSocket
messages and ends (`recorder.websocket`) are events too, counted beside `seen`
(`ws_messages`, `ws_ends`) and in the same buckets, so with WebSockets the rule
reads `seen + ws_messages + ws_ends = recorded + dropped + failed`. `Counts`
adds up (`+`), so a supervisor of several recorder processes can print one
summary for all of them with the same line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from recorder.sink import SinkStats

#: The start of the summary line (tests and tools look for it).
SUMMARY_PREFIX = "trafficmirror recorder summary:"


@dataclass(frozen=True)
class Counts:
    """A recorder's counters; `recorded`, `dropped` and `failed` are the buckets of `seen`."""

    seen: int = 0
    delivered: int = 0
    queue_full: int = 0
    undelivered: int = 0
    produce_failed: int = 0
    delivery_failed: int = 0
    convert_failed: int = 0
    filtered: int = 0
    cut_off: int = 0
    #: Bodies recorded cut because the in-flight body budget was spent (`recorder.capture`).
    budget_cut: int = 0
    #: Bodies recorded cut, flagged body_truncated (over the cap, or any reason above).
    truncated: int = 0
    #: WebSocket messages of recorded connections (events beside `seen`, in the same buckets).
    ws_messages: int = 0
    #: WebSocket connection ends recorded (one event each, beside `seen`).
    ws_ends: int = 0
    #: WebSocket messages that could not be queued (part of dropped and failed).
    ws_messages_not_recorded: int = 0

    @classmethod
    def of(
        cls,
        stats: SinkStats,
        *,
        seen: int,
        convert_failed: int,
        filtered: int,
        cut_off: int,
        budget_cut: int = 0,
        truncated: int = 0,
        ws_messages: int = 0,
        ws_ends: int = 0,
        ws_messages_not_recorded: int = 0,
    ) -> Counts:
        """The counts of a recorder whose sinks add up to `stats`."""
        return cls(
            seen=seen,
            delivered=stats.delivered,
            queue_full=stats.queue_full,
            undelivered=stats.undelivered,
            produce_failed=stats.produce_failed,
            delivery_failed=stats.delivery_failed,
            convert_failed=convert_failed,
            filtered=filtered,
            cut_off=cut_off,
            budget_cut=budget_cut,
            truncated=truncated,
            ws_messages=ws_messages,
            ws_ends=ws_ends,
            ws_messages_not_recorded=ws_messages_not_recorded,
        )

    @property
    def recorded(self) -> int:
        """Events Kafka acknowledged."""
        return self.delivered

    @property
    def dropped(self) -> int:
        """Events lost without an error: the producer's queue was full, or still queued at exit."""
        return self.queue_full + self.undelivered

    @property
    def failed(self) -> int:
        """Events that could not be built, or that the client or Kafka refused."""
        return self.produce_failed + self.delivery_failed + self.convert_failed

    @property
    def events(self) -> int:
        """Events taken for recording: the exchanges seen, and WebSocket messages and ends."""
        return self.seen + self.ws_messages + self.ws_ends

    @property
    def pending(self) -> int:
        """Events not accounted for yet: still queued for Kafka (0 once flushed)."""
        return self.events - self.recorded - self.dropped - self.failed

    @property
    def balanced(self) -> bool:
        """True when `seen (+ WebSocket events) = recorded + dropped + failed`, after the flush."""
        return self.pending == 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def line(self) -> str:
        """The one-line exit summary."""
        return (
            f"{SUMMARY_PREFIX} seen={self.seen} recorded={self.recorded} "
            f"dropped={self.dropped} failed={self.failed} (queue_full={self.queue_full} "
            f"undelivered={self.undelivered} delivery_failed={self.delivery_failed} "
            f"produce_failed={self.produce_failed} convert_failed={self.convert_failed}) "
            f"filtered={self.filtered} cut_off={self.cut_off} budget_cut={self.budget_cut} "
            f"truncated={self.truncated}{self._websocket_part()}"
        )

    def _websocket_part(self) -> str:
        # Only when there were WebSockets: the line of plain HTTP traffic stays as it was.
        if not (self.ws_messages or self.ws_ends):
            return ""
        return (
            f" ws_messages={self.ws_messages} ws_ends={self.ws_ends} "
            f"ws_messages_not_recorded={self.ws_messages_not_recorded}"
        )


def add_up(stats: Iterable[SinkStats]) -> SinkStats:
    """The sum of several sinks' counters (a recorder makes a new sink on reconfiguration)."""
    total = SinkStats()
    for one in stats:
        for name in SinkStats.__dataclass_fields__:
            setattr(total, name, getattr(total, name) + getattr(one, name))
    return total
