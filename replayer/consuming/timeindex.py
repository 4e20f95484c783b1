"""From a moment to an offset: the first record of each partition recorded at or after it.

The recorder sets every message's Kafka timestamp to the request's start time,
so "the first offset whose timestamp is ≥ T" is where a replay of the traffic
since T begins (and, for an end time, where it stops). Kafka answers that with
`offsets_for_times` (ListOffsets by timestamp). Not every broker does it
right: librdkafka's mock cluster answers -1 (the end) for every partition, and
Kafka-compatible services differ, so every answer is checked against the
records themselves (two reads per partition) before it is used. A partition
whose answer fails the check, or a broker that cannot answer at all, gets a
binary search over record timestamps instead: read one record at a chosen
offset (assign + consume) and halve the offsets left, about log2(records) + 2
reads per partition.

Both paths use Kafka's meaning: the smallest offset whose record has a
timestamp ≥ `when_ms`, the high watermark when there is none. The binary
search finds it exactly when timestamps do not decrease along a partition;
the recorder writes a record when its response is complete, so a slow request
sits a little later in the log than its start time says. Callers that need
every record of a time window widen the span by `ORDER_SLACK_MS` and check
each record's timestamp (`replayer.selecting.selector`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from replayer.consuming.spans import watermarks
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.kafka import KafkaSettings

logger = logging.getLogger(__name__)

#: How far (ms) a record's timestamp may lag behind the records written before
#: it and still be found: the recorder writes after the response, so the lag is
#: a request's duration plus the producer's linger.
ORDER_SLACK_MS = 60_000

#: Consumer settings that make one probe read take milliseconds: a consumer
#: cannot fetch a newly assigned offset until its previous fetch returns, which
#: at the end of a partition waits `fetch.wait.max.ms` (500 ms by default).
PROBE_OVERRIDES: dict[str, Any] = {
    "enable.partition.eof": True,
    "fetch.wait.max.ms": 5,
    "max.partition.fetch.bytes": 16 * 1024,
}

_TIMESTAMP_NOT_AVAILABLE = 0


def probe_consumer(settings: KafkaSettings) -> Any:
    """A consumer (no group) made for `offsets_for_time`; close it when done."""
    from confluent_kafka import Consumer

    return Consumer(settings.consumer_config(None, **PROBE_OVERRIDES))


def offsets_for_time(
    consumer: Any,
    topic: str,
    partitions: Sequence[int],
    when_ms: int,
    timeout: float = 10.0,
) -> dict[int, int]:
    """For each partition, the first offset whose record timestamp is ≥ `when_ms`.

    The high watermark when no record is that late (an empty partition: its
    high watermark). The broker's `offsets_for_times` answer is used when it
    passes the check against the records, else a binary search over record
    timestamps gives the same offset. `consumer` is a confluent_kafka Consumer
    without a group subscription, best one from `probe_consumer()` (any
    consumer works, but then each read of the search may take
    `fetch.wait.max.ms`); its assignment is changed. Raises `KafkaUnavailable`
    when the cluster does not answer within `timeout` (per request).
    """
    probe = _Probe(consumer, topic, timeout)
    bounds = {p: watermarks(consumer, topic, p, timeout) for p in partitions}
    answers = _broker_answers(consumer, topic, partitions, when_ms, timeout)
    result: dict[int, int] = {}
    try:
        for partition in partitions:
            low, high = bounds[partition]
            if high <= low:
                result[partition] = high
                continue
            answer = answers.get(partition)
            if answer is not None and _plausible(probe, partition, low, high, answer, when_ms):
                result[partition] = high if answer < 0 else answer
                continue
            logger.debug(
                "%s[%d]: broker answered %s for timestamp %d; searching the records",
                topic,
                partition,
                answer,
                when_ms,
            )
            result[partition] = search(probe, partition, low, high, when_ms)
    finally:
        probe.release()
    return result


def _broker_answers(
    consumer: Any, topic: str, partitions: Sequence[int], when_ms: int, timeout: float
) -> dict[int, int]:
    """The broker's offsets by timestamp; partitions it gave an error for are left out."""
    wanted = [TopicPartition(topic, p, when_ms) for p in partitions]
    try:
        answered = consumer.offsets_for_times(wanted, timeout=timeout)
    except KafkaException as exc:
        # Unsupported by the broker, or a timeout: the records still tell.
        logger.debug("offsets_for_times failed for %s: %s", topic, exc)
        return {}
    return {tp.partition: int(tp.offset) for tp in answered if tp.error is None}


def _plausible(
    probe: _Probe, partition: int, low: int, high: int, answer: int, when_ms: int
) -> bool:
    """Does the record at `answer` (and the one before) agree with what Kafka means?

    -1 means "no record that late": the last record must then be earlier.
    An offset must hold a record stamped ≥ `when_ms` whose predecessor is earlier.
    """
    if answer == -1 or answer == high:  # -1: OFFSET_END
        last = probe.read(partition, high - 1, high)
        return last is None or last[1] < when_ms
    if not low <= answer < high:
        return False
    found = probe.read(partition, answer, high)
    if found is None or found[1] < when_ms:
        return False
    if answer == low:
        return True
    before = probe.read(partition, answer - 1, high)
    return before is None or before[0] >= answer or before[1] < when_ms


def search(probe: _Probe, partition: int, low: int, high: int, when_ms: int) -> int:
    """Binary search for the first offset in `low..high-1` stamped ≥ `when_ms` (else `high`).

    An offset that holds no record (compaction, a transaction marker) reads as
    the next record after it, so the answer is always a record's offset.
    """
    lo, hi = low, high
    while lo < hi:
        mid = (lo + hi) // 2
        found = probe.read(partition, mid, high)
        if found is None:
            hi = mid
        elif found[1] >= when_ms:
            hi = mid
        else:
            lo = found[0] + 1
    if lo >= high:
        return high
    found = probe.read(partition, lo, high)
    return high if found is None else found[0]


class _Probe:
    """Reads single records at chosen offsets through the caller's consumer."""

    def __init__(self, consumer: Any, topic: str, timeout: float) -> None:
        self.consumer = consumer
        self.topic = topic
        self.timeout = timeout
        self.reads = 0
        self._cache: dict[tuple[int, int], tuple[int, int] | None] = {}

    def read(self, partition: int, offset: int, high: int) -> tuple[int, int] | None:
        """(offset, timestamp ms) of the first record at or after `offset`, None if none
        before `high`."""
        key = (partition, offset)
        if key in self._cache:
            return self._cache[key]
        self.reads += 1
        consumer = self.consumer
        consumer.assign([TopicPartition(self.topic, partition, offset)])
        deadline = time.monotonic() + self.timeout
        found: tuple[int, int] | None = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise KafkaUnavailable(
                        f"cannot read offset {offset} of partition {partition} of "
                        f"{self.topic!r} within {self.timeout:g}s"
                    )
                message = consumer.poll(min(left, 0.5))
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if message.partition() == partition and message.offset() >= offset:
                            break
                        continue
                    if error.fatal():
                        raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}")
                    continue
                # An earlier assignment's prefetched record: not the one asked for.
                if message.partition() != partition or message.offset() < offset:
                    continue
                if message.offset() < high:
                    kind, stamp = message.timestamp()
                    if kind == _TIMESTAMP_NOT_AVAILABLE:
                        raise KafkaUnavailable(
                            f"records of {self.topic!r} carry no timestamp: "
                            "no time window can be found"
                        )
                    found = (int(message.offset()), int(stamp))
                break
        except KafkaException as exc:
            raise KafkaUnavailable(f"Kafka consumer failed: {exc}") from exc
        self._cache[key] = found
        return found

    def release(self) -> None:
        """Give the partitions back, so the caller's own assignment starts clean."""
        try:
            self.consumer.unassign()
        except KafkaException:
            pass


def since_offsets(
    settings: KafkaSettings,
    topic: str,
    partitions: list[int],
    since_us: int,
    timeout: float = 10.0,
) -> dict[int, int]:
    """Where a session's replay from `since_us` starts in each partition.

    The first offset stamped at or after `since − ORDER_SLACK_MS` (a partition
    is in the order responses finished, its timestamps are request starts), as
    `replay range --since` does; the select step drops what is before `since`.
    """
    probe = probe_consumer(settings)
    try:
        return offsets_for_time(
            probe, topic, partitions, since_us // 1000 - ORDER_SLACK_MS, timeout
        )
    finally:
        probe.close()


def record_times(
    settings: KafkaSettings, topic: str, offsets: dict[int, int], timeout: float = 10.0
) -> dict[int, int]:
    """The timestamp (ms) of the record at (or first after) each partition's offset.

    Partitions where no record is found there are left out.
    """
    consumer = probe_consumer(settings)
    probe = _Probe(consumer, topic, timeout)
    try:
        found = {p: probe.read(p, offset, offset + 1) for p, offset in offsets.items()}
    finally:
        probe.release()
        consumer.close()
    return {p: stamp for p, hit in found.items() if hit is not None for stamp in (hit[1],)}
