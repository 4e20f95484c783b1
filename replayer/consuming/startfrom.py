"""Where a worker group starts reading a partition it has never committed: `--start-from`.

A group with a committed offset resumes from it, always. A partition without
one (a new group, a partition added later) starts at `latest` (the high
watermark: a live mirror replays what is recorded from now on, not the whole
retention), `earliest` (the low watermark: everything retained), or a time:
the first record stamped at or after it (`timeindex.offsets_for_time`, which
also works where the broker cannot look up timestamps). The position chosen is
committed at once, so a restart or the next owner resumes from it instead of
choosing again later. Offsets a group committed but the broker no longer holds
are Kafka's business: `auto.offset.reset` (earliest) applies to them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from replayer.consuming.spans import watermarks
from replayer.consuming.timeindex import offsets_for_time, probe_consumer
from replayer.consuming.timespec import parse_time
from trafficmirror.plumbing.errors import ConfigError, KafkaUnavailable
from trafficmirror.plumbing.kafka import KafkaSettings

logger = logging.getLogger(__name__)

LATEST = "latest"
EARLIEST = "earliest"


@dataclass(frozen=True, slots=True)
class StartFrom:
    """`latest`, `earliest`, or a moment (`time_ms`, Unix milliseconds)."""

    where: str = LATEST
    time_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> StartFrom:
        """`latest`, `earliest` or a time as `--since` takes it; `ConfigError` otherwise."""
        word = text.strip().lower()
        if word in (LATEST, EARLIEST):
            return cls(word)
        try:
            when = parse_time(text)
        except ConfigError:
            raise ConfigError(
                f"{text!r} is not latest, earliest or a time (ISO 8601 such as "
                "2024-05-01T10:00Z, relative such as -2h, or now)"
            ) from None
        return cls("time", round(when.timestamp() * 1000))

    def describe(self) -> str:
        """`latest`, `earliest` or `2024-05-01T10:00:00.000+00:00`."""
        if self.time_ms is None:
            return self.where
        when = dt.datetime.fromtimestamp(self.time_ms / 1000, dt.UTC)
        return when.isoformat(timespec="milliseconds")


class StartPositions:
    """Finds the start of newly assigned partitions that have no committed offset.

    Called on the group consumer's thread inside its assignment callback. It
    asks through a consumer of its own (the group's id, never subscribed): a
    member blocked in its own callback may not get an answer about its group
    in time, and a time look-up reassigns the consumer it reads with.
    `close()` when done.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group: str,
        start: StartFrom,
        timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group = group
        self.start = start
        self.timeout = timeout
        self._consumer: Any = None

    def _lookup(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            config = self.settings.consumer_config(
                self.group, "classic", **{"enable.auto.commit": False}
            )
            self._consumer = Consumer(config)
        return self._consumer

    def warm_up(self, partitions: Sequence[int]) -> None:
        """Connect and find the group's coordinator now, before the group assigns anything,
        so the look-up in the assignment callback is one round trip."""
        try:
            self.uncommitted(partitions[:1])
        except KafkaUnavailable as exc:
            logger.debug("start positions: %s", exc)

    def uncommitted(self, partitions: Sequence[int]) -> list[int]:
        """The partitions of `partitions` for which the group has no committed offset."""
        if not partitions:
            return []
        asked = [TopicPartition(self.topic, p) for p in partitions]
        try:
            answered = self._lookup().committed(asked, timeout=self.timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read the group's committed offsets: {exc}") from exc
        return sorted(tp.partition for tp in answered if tp.offset < 0)

    def positions(self, partitions: Sequence[int]) -> dict[int, int]:
        """Where each of `partitions` (none committed) starts: a real offset, to commit."""
        if not partitions:
            return {}
        start = self.start
        if start.time_ms is not None:
            probe = probe_consumer(self.settings)
            try:
                return offsets_for_time(probe, self.topic, partitions, start.time_ms, self.timeout)
            finally:
                probe.close()
        index = 0 if start.where == EARLIEST else 1
        consumer = self._lookup()
        return {p: watermarks(consumer, self.topic, p, self.timeout)[index] for p in partitions}

    def close(self) -> None:
        """Close the look-up consumer, if one was made."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
