"""Moment → offset: the broker's answer when it is right, a binary search when it is not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from replayer.consuming import timeindex
from replayer.consuming.timeindex import offsets_for_time, probe_consumer, search
from tests.support import Kafka
from trafficmirror.plumbing.kafka import KafkaSettings

BASE_MS = 1_760_000_000_000


def expected(stamps: list[int], when_ms: int, low: int = 0) -> int:
    """Kafka's meaning, by brute force: the first offset stamped ≥ when_ms, else the end."""
    for index, stamp in enumerate(stamps):
        if stamp >= when_ms:
            return low + index
    return low + len(stamps)


# ---------------------------------------------------------------- fake consumer


class _Message:
    def __init__(self, partition: int, offset: int, stamp: int) -> None:
        self._p, self._o, self._t = partition, offset, stamp

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, self._t)


class _Answer:
    """What confluent_kafka hands back per partition: offset and error."""

    def __init__(self, partition: int, offset: int, error: KafkaError | None) -> None:
        self.partition, self.offset, self.error = partition, offset, error


class FakeConsumer:
    """Partitions as {offset: timestamp}; `answer` plays the broker's offsets_for_times."""

    def __init__(self, partitions: dict[int, dict[int, int]], answer: Any) -> None:
        self.partitions = partitions
        self.answer = answer
        self._at: tuple[int, int] | None = None
        self.polls = 0

    def get_watermark_offsets(self, tp: TopicPartition, **_: Any) -> tuple[int, int]:
        records = self.partitions[tp.partition]
        return (min(records), max(records) + 1) if records else (0, 0)

    def offsets_for_times(self, tps: list[TopicPartition], timeout: float) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        answered = []
        for tp in tps:
            offset = self.answer(tp)
            if isinstance(offset, KafkaError):  # a per-partition error
                answered.append(_Answer(tp.partition, -1, offset))
            else:
                answered.append(_Answer(tp.partition, offset, None))
        return answered

    def assign(self, tps: list[TopicPartition]) -> None:
        (tp,) = tps
        self._at = (tp.partition, tp.offset)

    def unassign(self) -> None:
        self._at = None

    def poll(self, timeout: float) -> _Message | None:
        assert self._at is not None
        self.polls += 1
        partition, offset = self._at
        later = sorted(o for o in self.partitions[partition] if o >= offset)
        assert later, "the probe read beyond the last record"
        self._at = None
        return _Message(partition, later[0], self.partitions[partition][later[0]])


def kafka_answer(partitions: dict[int, dict[int, int]]) -> Any:
    def answer(tp: TopicPartition) -> int:
        records = partitions[tp.partition]
        hits = [o for o, t in sorted(records.items()) if t >= tp.offset]
        return hits[0] if hits else -1

    return answer


@pytest.fixture
def layout() -> dict[int, dict[int, int]]:
    # Partition 0: 100 records, 10 ms apart; partition 1 starts at offset 40
    # (retention) and has holes (compaction); partition 2 is empty.
    return {
        0: {o: BASE_MS + 10 * o for o in range(100)},
        1: {o: BASE_MS + 25 * o for o in range(40, 90) if o % 3},
        2: {},
    }


@pytest.mark.parametrize(
    "when", [BASE_MS - 5, BASE_MS, BASE_MS + 333, BASE_MS + 990, BASE_MS + 5000]
)
def test_a_right_broker_answer_is_used_after_two_reads(
    layout: dict[int, dict[int, int]], when: int
) -> None:
    consumer = FakeConsumer(layout, kafka_answer(layout))
    got = offsets_for_time(consumer, "t", [0, 1, 2], when)
    for p, records in layout.items():
        ordered = sorted(records)
        stamps = [records[o] for o in ordered]
        index = expected(stamps, when)
        want = ordered[index] if index < len(ordered) else (max(records) + 1 if records else 0)
        assert got[p] == want, p
    assert consumer.polls <= 4  # ≤ 2 validation reads per non-empty partition


@pytest.mark.parametrize(
    "broker",
    [
        lambda tp: -1,  # the mock cluster
        lambda tp: 0,  # what Tansu answered
        lambda tp: 10**9,  # nonsense
        lambda tp: KafkaError(KafkaError.UNSUPPORTED_VERSION),  # per partition
        KafkaException("unsupported"),
    ],
)
def test_a_wrong_or_missing_answer_falls_back_to_the_same_offsets(
    layout: dict[int, dict[int, int]], broker: Any
) -> None:
    right = FakeConsumer(layout, kafka_answer(layout))
    for when in (BASE_MS - 1, BASE_MS + 1, BASE_MS + 555, BASE_MS + 1210, BASE_MS + 99_999):
        wrong = FakeConsumer(layout, broker)
        assert offsets_for_time(wrong, "t", [0, 1, 2], when) == offsets_for_time(
            right, "t", [0, 1, 2], when
        ), when


def test_search_lands_on_a_record_after_a_hole() -> None:
    records = {o: BASE_MS + o for o in (0, 1, 5, 6, 9)}
    probe = timeindex._Probe(FakeConsumer({0: records}, None), "t", 1.0)
    assert search(probe, 0, 0, 10, BASE_MS + 2) == 5
    assert search(probe, 0, 0, 10, BASE_MS + 7) == 9
    assert search(probe, 0, 0, 10, BASE_MS + 10) == 10
    assert search(probe, 0, 0, 10, BASE_MS) == 0


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 50), min_size=1, max_size=80),
    holes=st.sets(st.integers(0, 79)),
    low=st.integers(0, 5),
    when=st.integers(-10, 2500),
    broker=st.sampled_from(["right", "minus-one", "zero"]),
)
def test_any_layout_gives_kafkas_answer(
    gaps: list[int], holes: set[int], low: int, when: int, broker: str
) -> None:
    """Non-decreasing timestamps (ties too), compaction holes, any broker answer."""
    stamps, stamp = [], BASE_MS
    for gap in gaps:
        stamp += gap
        stamps.append(stamp)
    records = {low + i: t for i, t in enumerate(stamps) if i not in holes or i == len(stamps) - 1}
    layout = {0: records}
    answers = {"right": kafka_answer(layout), "minus-one": lambda tp: -1, "zero": lambda tp: 0}
    got = offsets_for_time(FakeConsumer(layout, answers[broker]), "t", [0], BASE_MS + when)
    later = [o for o in sorted(records) if records[o] >= BASE_MS + when]
    assert got == {0: later[0] if later else max(records) + 1}


# ---------------------------------------------------------------- real broker


@pytest.fixture
def stamped(kafka: Kafka) -> Iterator[tuple[str, dict[int, list[int]]]]:
    """A 3-partition topic with known timestamps (one empty partition)."""
    topic = kafka.new_topic(3)
    stamps = {
        0: [BASE_MS + 7 * n for n in range(300)],
        1: [BASE_MS + 1000 + 50 * n for n in range(9)],
    }
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    for partition, items in stamps.items():
        for stamp in items:
            producer.produce(topic, b"x", partition=partition, timestamp=stamp)
    assert producer.flush(30) == 0
    yield topic, stamps


def test_offsets_on_the_broker_match_the_records(
    kafka: Kafka, stamped: tuple[str, dict[int, list[int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the mock this is the binary search; on a real cluster the broker's answer."""
    topic, stamps = stamped
    reads: list[int] = []
    read = timeindex._Probe.read

    def counted(self: timeindex._Probe, partition: int, offset: int, high: int) -> Any:
        reads.append(partition)
        return read(self, partition, offset, high)

    monkeypatch.setattr(timeindex._Probe, "read", counted)
    consumer = probe_consumer(KafkaSettings(kafka.bootstrap_servers))
    try:
        for when in (
            BASE_MS - 1,
            BASE_MS,
            BASE_MS + 700,
            BASE_MS + 701,
            BASE_MS + 1100,
            BASE_MS + 2093,
            BASE_MS + 10**6,
        ):
            reads.clear()
            got = offsets_for_time(consumer, topic, [0, 1, 2], when, timeout=10)
            want = {0: expected(stamps[0], when), 1: expected(stamps[1], when), 2: 0}
            assert got == want, when
            if kafka.mock is None:  # a real broker's answer is checked, not searched
                assert reads.count(0) <= 2 and reads.count(1) <= 2, reads
            else:  # the mock answers -1: a search, log2(300) + 2 reads at most
                assert reads.count(0) <= 11, reads
    finally:
        consumer.close()
