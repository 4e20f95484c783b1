"""Reading back what the recorder wrote, without joining a consumer group."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import Codec


def read_messages(bootstrap: str, topic: str, count: int, timeout: float = 15.0) -> list[Any]:
    """Up to `count` messages of every partition of `topic`, read from the start.

    Partitions are assigned directly: a group join would cost seconds per call
    on the mock cluster and tells these tests nothing.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    messages: list[Any] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def read_events(
    bootstrap: str, topic: str, count: int, timeout: float = 15.0
) -> list[tuple[Any, dict[str, Any]]]:
    """(message, decoded event) pairs, like `read_messages`."""
    codec = Codec()
    return [
        (msg, codec.decode(msg.value())) for msg in read_messages(bootstrap, topic, count, timeout)
    ]
