"""A time window (`--since`/`--until`) as offset spans, for `replay range` and `inspect`.

Each partition's span runs from the first record stamped at or after
`since − ORDER_SLACK_MS` to the last one before the first record stamped at or
after `until + ORDER_SLACK_MS` (`replayer.consuming.timeindex`). The margin is there
because a partition is in write order, which is the order responses finished,
while timestamps are request starts: a request that started just before
`until` but took a while sits after records that started later. The pipeline's
select step then keeps exactly the records with `since ≤ timestamp < until`
(`replayer.selecting.selector`), and counts the margin's others as `skipped-outside-window`.
"""

from __future__ import annotations

from collections.abc import Sequence

from replayer.consuming.spans import Span, resolve_spans
from replayer.consuming.timeindex import ORDER_SLACK_MS, offsets_for_time, probe_consumer
from trafficmirror.plumbing.kafka import KafkaSettings


def window_spans(
    settings: KafkaSettings,
    topic: str,
    partitions: Sequence[int],
    since_ms: int | None,
    until_ms: int | None,
    timeout: float = 10.0,
) -> tuple[list[Span], list[str]]:
    """The spans holding every record of `since_ms ≤ t < until_ms` (None = open), and notes.

    `partitions` empty = all. Partitions with no record near the window are
    left out with a note. Raises `TopicNotFound` for an unknown topic or
    partition, `KafkaUnavailable` when the cluster does not answer.
    """
    consumer = probe_consumer(settings)
    try:
        whole, notes = resolve_spans(
            consumer, topic, partitions, None, None, settings.bootstrap_servers
        )
        chosen = [span.partition for span in whole]
        firsts: dict[int, int] = {}
        ends: dict[int, int] = {}
        if since_ms is not None and chosen:
            firsts = offsets_for_time(consumer, topic, chosen, since_ms - ORDER_SLACK_MS, timeout)
        if until_ms is not None and chosen:
            ends = offsets_for_time(consumer, topic, chosen, until_ms + ORDER_SLACK_MS, timeout)
    finally:
        consumer.close()
    spans: list[Span] = []
    for span in whole:
        first = max(span.first, firsts.get(span.partition, span.first))
        last = min(span.last, ends.get(span.partition, span.last + 1) - 1)
        if first > last:
            notes.append(
                f"partition {span.partition} of topic {topic!r} has no records in the window, "
                "skipped"
            )
            continue
        spans.append(Span(span.partition, first, last))
    return spans, notes
