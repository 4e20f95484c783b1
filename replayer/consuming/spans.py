"""Offset ranges of a topic: validated against the partitions' watermarks, read to the end.

Used by `replay range` and `inspect`, which read fixed offsets without a group.
A partition holds offsets `low..high-1` (its low and high watermarks); a
requested offset outside that is refused with a message that says both, since
the user cannot see them otherwise. "Until the end" means the last offset
present when the command started: a range is fixed, it never waits for new
records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from trafficmirror.plumbing.errors import (
    KafkaUnavailable,
    OffsetOutOfRange,
    TopicNotFound,
    UsageError,
)
from trafficmirror.plumbing.kafka import topic_partitions


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets `first..last` (inclusive) of one partition."""

    partition: int
    first: int
    last: int

    @property
    def count(self) -> int:
        """Offsets in the span (records, unless compaction left holes)."""
        return self.last - self.first + 1


def describe_partitions(partitions: Sequence[int]) -> str:
    """`0-3` for a contiguous run, else `0, 2, 5`."""
    ordered = sorted(partitions)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(str(p) for p in ordered)


def resolve_spans(
    consumer: Any,
    topic: str,
    partitions: Sequence[int],
    start: int | None,
    end: int | None,
    bootstrap: str = "the cluster",
) -> tuple[list[Span], list[str]]:
    """The spans to read, and notes about partitions left out (empty ones).

    `partitions` empty = all; `start` None = each partition's low watermark;
    `end` None = each partition's last offset at this moment (an empty
    partition is then skipped with a note). Raises `TopicNotFound` for an
    unknown topic or partition and `OffsetOutOfRange` for offsets outside the
    watermarks.
    """
    if start is not None and end is not None and start > end:
        raise UsageError(f"start offset {start} is after end offset {end}")
    available = topic_partitions(consumer, topic, bootstrap)
    chosen = sorted(set(partitions)) if partitions else available
    unknown = [p for p in chosen if p not in available]
    if unknown:
        noun = "partition" if len(unknown) == 1 else "partitions"
        raise TopicNotFound(
            f"topic {topic!r} has no {noun} {describe_partitions(unknown)} "
            f"(it has {describe_partitions(available)})"
        )
    spans: list[Span] = []
    notes: list[str] = []
    for partition in chosen:
        low, high = watermarks(consumer, topic, partition)
        where = f"partition {partition} of topic {topic!r}"
        if high <= low:
            if end is None:
                notes.append(f"{where} is empty (watermarks {low}/{high}), skipped")
                continue
            wanted = f"offsets {start}..{end}" if start is not None else f"offset {end}"
            raise OffsetOutOfRange(
                f"{where} is empty (low and high watermark {high}): no {wanted} to read"
            )
        holds = f"{where} holds offsets {low}..{high - 1} (low watermark {low}, high {high})"
        for label, offset in (("start", start), ("end", end)):
            if offset is not None and not low <= offset <= high - 1:
                raise OffsetOutOfRange(f"{label} offset {offset} is outside: {holds}")
        spans.append(
            Span(partition, low if start is None else start, high - 1 if end is None else end)
        )
    return spans, notes


def watermarks(consumer: Any, topic: str, partition: int, timeout: float = 10.0) -> tuple[int, int]:
    """(low, high) of one partition, asked from the broker."""
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout, cached=False
        )
    except Exception as exc:  # KafkaException on a timeout or a broker error
        raise KafkaUnavailable(
            f"cannot read the watermarks of partition {partition} of {topic!r}: {exc}"
        ) from exc
    return int(low), int(high)


class SpanReader:
    """Decides, message by message, what belongs to the spans and when each is done.

    Consume with `enable.partition.eof=true`: the end-of-partition event tells a
    span whose last offset is missing (a compaction hole, a transaction marker)
    that it is complete.
    """

    def __init__(self, spans: Sequence[Span]) -> None:
        self.spans = {span.partition: span for span in spans}
        self.open = set(self.spans)

    @property
    def done(self) -> bool:
        """True when every span has been read to its last offset."""
        return not self.open

    def assignment(self, topic: str) -> list[TopicPartition]:
        """Where to start reading each partition."""
        return [TopicPartition(topic, s.partition, s.first) for s in self.spans.values()]

    def admit(self, partition: int, offset: int) -> bool:
        """True if this message is in its span; closes the span at its last offset."""
        span = self.spans.get(partition)
        if span is None or partition not in self.open:
            return False
        if offset >= span.last:
            self.open.discard(partition)
        return span.first <= offset <= span.last

    def end_of_partition(self, partition: int, next_offset: int) -> None:
        """The broker has nothing at `next_offset` yet: a span ending before it is done."""
        span = self.spans.get(partition)
        if span is not None and next_offset > span.last:
            self.open.discard(partition)

    def is_eof(self, error: Any) -> bool:
        """True for the end-of-partition event (not an error)."""
        return bool(error.code() == KafkaError._PARTITION_EOF)
