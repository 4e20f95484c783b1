"""Replay sessions in Kafka: the `<topic>.control` topic and the group's position.

* `ensure_control_topic`: creates `<topic>.control` with `cleanup.policy=compact`
  when it is missing, through the admin API. A cluster that names no live
  controller (librdkafka's mock cluster: it has no admin API) is left to
  auto-create the topic on the first write, without compaction.
* `ControlReader`: a consumer without a group, assigned to every partition of
  the control topic from the beginning, that keeps the newest record of one
  group; `session` commands read to the end once, workers follow it.
* `ControlWriter` / `publish`: writes a session (or the tombstone that ends
  it) and waits for the broker's acknowledgement.
* `group_position_us`: the recorded time of the first record the group has not
  replayed yet, from its committed offsets: where a new clock is anchored.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Producer, TopicPartition

from replayer.sessions import session as sessions
from replayer.sessions.session import Session
from schemas.codec import Codec
from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import DecodeError, KafkaUnavailable, TopicNotFound
from trafficmirror.plumbing.kafka import KafkaSettings, control_topic, topic_partitions

logger = logging.getLogger(__name__)

_FETCH_WAIT_MS = 100  # a new session must reach every worker well within a second


def ensure_control_topic(settings: KafkaSettings, topic: str, timeout: float = 10.0) -> None:
    """Create `<topic>.control` (1 partition, compacted) if the cluster lacks it."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    name = control_topic(topic)
    admin = AdminClient(settings.admin_client_config())
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"cannot read metadata from {settings.bootstrap_servers}: {exc}"
        ) from None
    if name in metadata.topics and metadata.topics[name].error is None:
        return
    if metadata.controller_id not in metadata.brokers:
        logger.info(
            "the cluster names no controller (no admin API, like the in-memory broker): "
            "%s is auto-created by the first write, not compacted",
            name,
        )
        return
    # Replication: the cluster's default (-1), like any topic its operators create.
    futures = admin.create_topics(
        [NewTopic(name, 1, -1, config={"cleanup.policy": "compact"})],
        request_timeout=timeout,
    )
    try:
        futures[name].result(timeout)
        logger.info("created %s (compacted)", name)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if getattr(error, "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
            return  # another session command was quicker
        raise KafkaUnavailable(f"cannot create {name}: {exc}") from None


class ControlWriter:
    """Writes session records of `<topic>.control`; `connect()` first, so that a revision
    stamped "effective in one second" is not written half a second later."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = control_topic(topic)
        self.bootstrap = settings.bootstrap_servers
        # One small record, acknowledged before the command ends: no idempotence
        # handshake or linger to wait for.
        overrides: dict[str, Any] = {"enable.idempotence": False, "linger.ms": 0, "acks": "all"}
        self.producer = Producer(settings.producer_config(**overrides))

    def connect(self, timeout: float = 10.0) -> None:
        """Fetch the topic's metadata (connecting to the cluster) before anything is stamped."""
        try:
            self.producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot reach {self.bootstrap}: {exc}") from None

    def write(self, group: str, session: Session | None, timeout: float = 10.0) -> None:
        """Write `session` (None: the tombstone that ends it) and wait for the acknowledgement."""
        errors: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err.str()))

        headers: list[tuple[str, bytes]] = []
        value = None
        if session is not None:
            encoded = sessions.codec().encode(session.to_record())
            value, headers = encoded.value, encoded.headers
        self.producer.produce(
            self.topic,
            value=value,
            key=group.encode(),
            headers=cast(Any, headers),
            on_delivery=delivered,
        )
        left = self.producer.flush(timeout)
        if left or errors:
            why = errors[0] if errors else f"not acknowledged within {timeout:g}s"
            raise KafkaUnavailable(f"cannot write the session to {self.topic}: {why}")


def publish(
    settings: KafkaSettings, topic: str, group: str, session: Session | None, timeout: float = 10.0
) -> None:
    """Write `session` (None: the tombstone that ends the group's session), acknowledged."""
    ControlWriter(settings, topic).write(group, session, timeout)


class ControlReader:
    """Follows the newest session record of `group` in `<topic>.control`.

    Not thread-safe: one thread at a time (the watcher's, or the command's).
    """

    def __init__(self, settings: KafkaSettings, topic: str, group: str) -> None:
        self.topic = control_topic(topic)
        self.group = group
        self._key = group.encode()
        self.bootstrap = settings.bootstrap_servers
        overrides: dict[str, Any] = {"fetch.wait.max.ms": _FETCH_WAIT_MS}
        self.consumer = Consumer(settings.consumer_config(None, "consumer", **overrides))
        self.partitions: list[int] = []
        self.session: Session | None = None
        self._next: dict[int, int] = {}

    def attach(self, timeout: float = 5.0) -> bool:
        """Assign the control topic's partitions from the beginning; False if it is missing."""
        if self.partitions:
            return True
        try:
            partitions = topic_partitions(self.consumer, self.topic, self.bootstrap, timeout)
        except TopicNotFound:
            return False
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        self.partitions = partitions
        return True

    def read_to_end(self, timeout: float = 10.0) -> Session | None:
        """Read every record present now; the group's session, None if it has none."""
        deadline = time.monotonic() + timeout
        if not self.attach(timeout):
            return None
        ends: dict[int, tuple[int, int]] = {}
        for partition in self.partitions:
            try:
                ends[partition] = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=timeout, cached=False
                )
            except KafkaException as exc:
                raise KafkaUnavailable(f"cannot read the end of {self.topic}: {exc}") from None

        def done() -> bool:
            return all(high <= max(low, self._next.get(p, 0)) for p, (low, high) in ends.items())

        while not done():
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot read {self.topic} within {timeout:g}s")
            self.poll(0.2)
        return self.session

    def poll(self, timeout: float) -> bool:
        """Read what arrived; True if the group's session changed."""
        changed = False
        for message in self.consumer.consume(100, timeout):
            error = message.error()
            if error is not None:
                logger.debug("Kafka (%s): %s", self.topic, error.str())
                continue
            self._next[int(message.partition() or 0)] = int(message.offset() or 0) + 1
            if message.key() != self._key:
                continue
            try:
                session = sessions.decode(message.value())
            except DecodeError as exc:
                logger.warning(
                    "ignoring a record in %s [%d]@%d: %s",
                    self.topic,
                    message.partition(),
                    message.offset(),
                    exc,
                )
                continue
            if session != self.session:
                self.session, changed = session, True
        return changed

    def close(self) -> None:
        self.consumer.close()


def read_session(settings: KafkaSettings, topic: str, group: str) -> Session | None:
    """The session in effect for `group` (None if it has none)."""
    reader = ControlReader(settings, topic, group)
    try:
        return reader.read_to_end()
    finally:
        reader.close()


def group_position_us(
    settings: KafkaSettings, topic: str, group: str, timeout: float = 10.0
) -> int | None:
    """Recorded time (µs) of the earliest record `group` has not replayed; None if none.

    Per partition, the committed offset (the low watermark where nothing is
    committed, as a worker starts there), the record there and its event's
    request start (the Kafka timestamp if the event does not decode). The
    committed offsets trail what is in flight by up to the auto-commit interval.
    """
    overrides: dict[str, Any] = {"enable.auto.commit": False}
    probe = Consumer(settings.consumer_config(group, "classic", **overrides))
    try:
        partitions = topic_partitions(probe, topic, settings.bootstrap_servers, timeout)
        try:
            committed = probe.committed([TopicPartition(topic, p) for p in partitions], timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read the offsets of group {group!r}: {exc}") from None
        starts: dict[int, int] = {}
        for tp in committed:
            low, high = probe.get_watermark_offsets(tp, timeout=timeout, cached=False)
            start = tp.offset if tp.offset >= 0 else low
            if max(start, low) < high:
                starts[tp.partition] = max(start, low)
    finally:
        probe.close()
    if not starts:
        return None
    return _earliest_recorded_us(settings, topic, starts, timeout)


def _earliest_recorded_us(
    settings: KafkaSettings, topic: str, starts: dict[int, int], timeout: float
) -> int | None:
    reader = Consumer(settings.consumer_config(None))
    codec = Codec()
    found: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        reader.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        while len(found) < len(starts) and time.monotonic() < deadline:
            for message in reader.consume(len(starts), 0.2):
                partition = int(message.partition() or 0)
                if message.error() is not None or partition in found:
                    continue
                found[partition] = _recorded_us(codec, message)
    finally:
        reader.close()
    if len(found) < len(starts):
        missing = sorted(set(starts) - set(found))
        raise KafkaUnavailable(
            f"cannot read the next records of {topic} partitions {missing} within {timeout:g}s"
        )
    return min(found.values())


def _recorded_us(codec: Codec, message: Any) -> int:
    try:
        return codec.decode_exchange(message.value())["request_start_us"]
    except (DecodeError, KeyError, TypeError, ValueError):
        _kind, stamp = message.timestamp()
        return int(stamp) * 1000
