"""A fake `confluent_kafka.Consumer` for unit tests of the worker's parts, no broker needed.

It keeps what a test needs to look at: every call with the thread it ran on,
the offsets stored and committed, the paused partitions. Messages are queued
with `deliver()`; rebalances with `rebalance()` run inside the next
`consume()`, on the caller's thread, as librdkafka runs its callbacks inside
a poll; `close()` revokes what is assigned, as librdkafka does when leaving.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

TOPIC = "tm-fake"

Callback = Callable[[Any, list[TopicPartition]], None]


class FakeMessage:
    """What the worker reads of a `confluent_kafka.Message`."""

    def __init__(
        self,
        partition: int,
        offset: int,
        *,
        timestamp_ms: int = 1_760_000_000_000,
        value: bytes = b"value",
        error: KafkaError | None = None,
        topic: str = TOPIC,
    ) -> None:
        self._partition = partition
        self._offset = offset
        self._timestamp_ms = timestamp_ms
        self._value = value
        self._error = error
        self._topic = topic

    def error(self) -> KafkaError | None:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return b"key-%d" % self._partition

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp_ms  # 1 = TIMESTAMP_CREATE_TIME

    def headers(self) -> None:
        return None


def eof(partition: int, offset: int) -> FakeMessage:
    """librdkafka's "end of partition for now" event."""
    return FakeMessage(partition, offset, error=KafkaError(KafkaError._PARTITION_EOF))


class FakeConsumer:
    """Records calls; `deliver()` and `rebalance()` say what the next `consume()` brings."""

    def __init__(self, topic: str = TOPIC) -> None:
        self.topic = topic
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.messages: deque[FakeMessage] = deque()
        self.rebalances: deque[tuple[str, list[int]]] = deque()
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.stored: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.seeks: dict[int, int] = {}
        self.watermarks: dict[int, tuple[int, int]] = {}
        self.positions: dict[int, int] = {}
        #: Raised by the next call of that name (then cleared).
        self.fail: dict[str, BaseException] = {}
        self.closed = False
        self._callbacks: dict[str, Callback] = {}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        self.threads.add(threading.current_thread().name)
        failure = self.fail.pop(name, None)
        if failure is not None:
            raise failure

    def deliver(self, *messages: FakeMessage) -> None:
        self.messages.extend(messages)

    def rebalance(self, kind: str, partitions: list[int]) -> None:
        """`kind`: assign, revoke or lost; runs inside the next consume()."""
        self.rebalances.append((kind, partitions))

    def _tps(self, partitions: list[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in partitions]

    def subscribe(
        self, topics: list[str], on_assign: Callback, on_revoke: Callback, on_lost: Callback
    ) -> None:
        self._call("subscribe")
        assert topics == [self.topic]
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self._call("consume")
        while self.rebalances:
            kind, partitions = self.rebalances.popleft()
            self._callbacks[kind](self, self._tps(partitions))
            if kind == "assign":
                self.assigned.update(partitions)
            else:
                self.assigned.difference_update(partitions)
        out = []
        while self.messages and len(out) < num_messages:
            out.append(self.messages.popleft())
        return out

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self._call("store_offsets")
        for tp in offsets:
            if tp.partition not in self.assigned:
                raise KafkaException(KafkaError(KafkaError._STATE, "not assigned"))
            self.stored[tp.partition] = tp.offset

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._call("pause")
        self.paused.update(tp.partition for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._call("resume")
        self.paused.difference_update(tp.partition for tp in partitions)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self._call("commit")
        assert not asynchronous
        for tp in offsets:
            self.committed[tp.partition] = tp.offset

    def assignment(self) -> list[TopicPartition]:
        self._call("assignment")
        return self._tps(sorted(self.assigned))

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        self._call("get_watermark_offsets")
        if tp.partition not in self.watermarks:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer"))
        return self.watermarks[tp.partition]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self._call("position")
        return [
            TopicPartition(self.topic, tp.partition, self.positions.get(tp.partition, -1001))
            for tp in partitions
        ]

    def seek(self, tp: TopicPartition) -> None:
        self._call("seek")
        if tp.partition not in self.assigned:
            raise KafkaException(KafkaError(KafkaError._STATE, "not assigned"))
        self.seeks[tp.partition] = tp.offset

    def close(self) -> None:
        self._call("close")
        if self.assigned and "revoke" in self._callbacks:
            self._callbacks["revoke"](self, self._tps(sorted(self.assigned)))
        self.assigned.clear()
        self.closed = True
