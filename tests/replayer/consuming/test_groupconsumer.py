"""GroupConsumer: every call on the consumer runs on its one thread; rebalances reach the loop."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from replayer.consuming.groupconsumer import GroupConsumer, offsets_text
from tests.replayer.consuming.fakeconsumer import TOPIC, FakeConsumer, FakeMessage
from trafficmirror.plumbing.errors import KafkaUnavailable


class Listener:
    """Notes where and with what each callback ran; revoke hands back `to_commit`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[int], str]] = []
        self.committed_offsets: list[list[TopicPartition]] = []
        self.to_commit: list[TopicPartition] = []

    def _note(self, kind: str, partitions: list[int]) -> None:
        self.events.append((kind, partitions, threading.current_thread().name))

    async def assigned(self, partitions: list[int]) -> None:
        self._note("assigned", partitions)

    async def revoked(self, partitions: list[int]) -> list[TopicPartition]:
        self._note("revoked", partitions)
        return self.to_commit

    async def lost(self, partitions: list[int]) -> None:
        self._note("lost", partitions)

    def committed(self, offsets: list[TopicPartition]) -> None:
        self.committed_offsets.append(offsets)


def tp(partition: int, offset: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition, offset)


def test_every_call_runs_on_the_consumer_thread_and_rebalances_run_on_the_loop() -> None:
    consumer, listener = FakeConsumer(), Listener()

    async def main() -> None:
        kafka = GroupConsumer(consumer, TOPIC, listener)
        await kafka.subscribe()
        consumer.rebalance("assign", [0, 1])
        consumer.deliver(FakeMessage(0, 5), FakeMessage(1, 7), FakeMessage(0, 6))
        messages, lag = await kafka.poll([], [], [], budget=2)
        assert [(m.partition(), m.offset()) for m in messages] == [(0, 5), (1, 7)]
        assert lag is None
        listener.to_commit = [tp(0, 6)]
        consumer.rebalance("revoke", [0])
        consumer.rebalance("lost", [1])
        messages, _ = await kafka.poll([], [], [], budget=10)
        assert [(m.partition(), m.offset()) for m in messages] == [(0, 6)]
        await kafka.close()

    asyncio.run(main())
    assert consumer.threads == {"trafficmirror-consumer_0"}
    loop_thread = threading.current_thread().name
    assert listener.events == [
        ("assigned", [0, 1], loop_thread),
        ("revoked", [0], loop_thread),
        ("lost", [1], loop_thread),
    ]
    # What the revoke handed back was stored and committed before the partition went.
    assert consumer.stored == {0: 6} and consumer.committed == {0: 6}
    assert listener.committed_offsets == [[tp(0, 6)]]
    assert consumer.closed


def test_a_poll_stores_pauses_and_resumes_first_and_measures_lag_when_asked() -> None:
    consumer, listener = FakeConsumer(), Listener()
    consumer.assigned = {0, 1, 2}
    consumer.watermarks = {0: (0, 100), 1: (0, 50)}  # partition 2 does not answer
    consumer.positions = {1: 20}

    async def main() -> None:
        kafka = GroupConsumer(consumer, TOPIC, listener)
        await kafka.subscribe()
        consumer.calls.clear()
        _, lag = await kafka.poll([tp(0, 40)], [1], [2], budget=5, lag_from={0: 40})
        # Partition 0: stored 40 of 100; partition 1: nothing stored, read from 20 of 50.
        assert lag == {0: 60, 1: 30}
        await kafka.close()

    asyncio.run(main())
    assert consumer.calls[:4] == ["store_offsets", "pause", "resume", "consume"]
    assert consumer.stored == {0: 40} and consumer.paused == {1}


def test_kafka_errors_in_a_poll_are_logged_unless_fatal(caplog: pytest.LogCaptureFixture) -> None:
    consumer, listener = FakeConsumer(), Listener()

    async def main() -> None:
        kafka = GroupConsumer(consumer, TOPIC, listener)
        try:
            await kafka.subscribe()
            consumer.deliver(FakeMessage(0, 1))
            consumer.fail["consume"] = KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
            assert await kafka.poll([], [], [], budget=1) == ([], None)
            consumer.fail["consume"] = KafkaException(
                KafkaError(KafkaError._FATAL, "fenced", fatal=True)
            )
            with pytest.raises(KafkaUnavailable, match="Kafka consumer failed: fenced"):
                await kafka.poll([], [], [], budget=1)
        finally:
            await kafka.close()

    caplog.set_level(logging.DEBUG, logger="replayer.consuming.groupconsumer")
    asyncio.run(main())
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "down" in caplog.records[0].getMessage()


def test_a_seek_commits_where_it_moved_and_a_failed_commit_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer, listener = FakeConsumer(), Listener()
    consumer.assigned = {0, 1}

    async def main() -> None:
        kafka = GroupConsumer(consumer, TOPIC, listener)
        await kafka.subscribe()
        consumer.assigned.discard(1)  # revoked meanwhile: its seek fails, the rest goes on
        await kafka.seek([tp(0, 10), tp(1, 20)])
        consumer.fail["commit"] = KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
        await kafka.commit([tp(0, 12)])
        await kafka.commit([])  # nothing to commit: no call at all
        await kafka.close()

    caplog.set_level(logging.WARNING, logger="replayer.consuming.groupconsumer")
    asyncio.run(main())
    assert consumer.seeks == {0: 10}
    assert consumer.committed == {0: 10, 1: 20}
    assert listener.committed_offsets == [[tp(0, 10), tp(1, 20)]]  # not the failed one
    assert consumer.stored == {0: 12}  # stored before the commit failed
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("cannot move partition 1 to offset 20")
    assert messages[1].startswith("could not commit offsets 0@12")
    assert consumer.calls.count("commit") == 2


def test_offsets_text() -> None:
    assert offsets_text({}) == "nothing"
    assert offsets_text({1: 40, 0: 12}) == "0@12, 1@40"
