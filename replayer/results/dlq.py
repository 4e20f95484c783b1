"""The dead-letter queue: records that cannot be decoded or sent go to `<topic>.dlq`.

A poison record (garbage bytes, a truncated Avro body, an unknown schema
fingerprint, or a valid event no HTTP request can be made of) must neither
stop the replay nor hold its partition's offsets back, and must not vanish
either. The pipeline hands it to `DeadLetters.send()` and counts it handled
once the message is queued. The dead letter is the original record, byte for
byte, with headers that say why and where it came from (`dead_letter_headers`;
`trafficmirror inspect -t <topic>.dlq` prints them); `DeadLetters` says what
is guaranteed when the broker is slow or away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from trafficmirror.plumbing.kafka import KafkaSettings, dlq_topic
from trafficmirror.plumbing.producer import BackgroundProducer, Report

logger = logging.getLogger(__name__)

WRITTEN = Counter(
    "trafficmirror_replayer_dlq_written",
    "Poison records (undecodable or unsendable) the broker acknowledged in <topic>.dlq.",
)
FAILED = Counter(
    "trafficmirror_replayer_dlq_failed",
    "Poison records that did not reach <topic>.dlq: produce (produce() refused it), delivery "
    "(the broker rejected it or it timed out), undelivered (still queued at exit); and "
    "queue_full: records whose dead letter found the local queue full (tried again until "
    "queued; not counted in the summary's failed).",
    ["reason"],
)

#: Header names added to every dead letter (all values are UTF-8 text).
HEADER_PREFIX = "trafficmirror-dlq-"
REASON_HEADER = HEADER_PREFIX + "reason"
ERROR_HEADER = HEADER_PREFIX + "error"
TOPIC_HEADER = HEADER_PREFIX + "topic"
PARTITION_HEADER = HEADER_PREFIX + "partition"
OFFSET_HEADER = HEADER_PREFIX + "offset"
REPLAYER_HEADER = HEADER_PREFIX + "replayer"

#: Why a record is dead-lettered (the reason header's values).
REASONS = ("undecodable", "unsendable")
#: Seconds between attempts to queue a dead letter that found the queue full.
RETRY_SECONDS = 0.5
_MAX_ERROR_BYTES = 1000


class Poisoned(Protocol):
    """What a dead letter is made of (`replayer.pipeline.Record` has these fields)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp_ms(self) -> int | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass
class DlqCounts:
    """Dead letters of this process: queued, acknowledged, and not written for any reason."""

    queued: int = 0
    written: int = 0
    failed: int = 0

    def line(self, topic: str) -> str:
        """`dead letters to T: written N, failed N` (queue-full retries are not failures)."""
        return f"dead letters to {topic}: written {self.written}, failed {self.failed}"


def dead_letter_headers(
    record: Poisoned, reason: str, error: str, replayer_id: str
) -> list[tuple[str, bytes]]:
    """The original headers (minus any earlier dead-letter ones), then ours.

    Ours: `trafficmirror-dlq-reason` (`undecodable` or `unsendable`),
    `trafficmirror-dlq-error` (the decoder's or request builder's message, at
    most 1,000 bytes), `trafficmirror-dlq-topic`, `-partition` and `-offset`
    (the source record), and `trafficmirror-dlq-replayer` (host/pid). All are
    text, so kcat (`-f '%h'`) shows them.
    """
    kept = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    detail = error.encode("utf-8", "replace")[:_MAX_ERROR_BYTES]
    return [
        *kept,
        (REASON_HEADER, reason.encode()),
        (ERROR_HEADER, detail.decode("utf-8", "ignore").encode()),
        (TOPIC_HEADER, record.topic.encode()),
        (PARTITION_HEADER, str(record.partition).encode()),
        (OFFSET_HEADER, str(record.offset).encode()),
        (REPLAYER_HEADER, replayer_id.encode()),
    ]


def describe(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str | int] | None:
    """Our dead-letter headers as a dict (`reason`, `error`, `topic`, `partition`,
    `offset`, `replayer`), or None when the message is not a dead letter."""
    found: dict[str, str | int] = {}
    for name, value in headers or ():
        if name.startswith(HEADER_PREFIX) and value is not None:
            text = value.decode("utf-8", "replace")
            field = name[len(HEADER_PREFIX) :]
            numeric = field in ("partition", "offset") and text.isdigit()
            found[field] = int(text) if numeric else text
    return found or None


class DeadLetters:
    """Writes poison records of traffic topic `topic` to `<topic>.dlq`, never blocking.

    The message keeps the original key, value (also when it is None),
    timestamp and headers. It is queued in the producer before the record
    counts as handled, so its offset cannot be committed first. The broker's
    acknowledgement is not awaited (it would stall the partition behind it), so
    a crash after the commit and before the delivery (milliseconds normally, up
    to the length of a broker outage) loses the dead letter; a clean stop
    flushes the queue (`close()`) before the worker's final commit. A message
    the broker rejects or that times out (`message.timeout.ms`) is counted
    `trafficmirror_replayer_dlq_failed{reason="delivery"}` and logged.

    When the producer's local queue is full (the broker has been away for
    long), `send()` answers False and the pipeline does not count the record
    handled: it tries again every `RETRY_SECONDS` (its offset, and the ones
    after it, stay uncommitted meanwhile). If the replay stops first, the next
    owner of the partition (or the next run) reads the record again, so it
    reaches the DLQ at least once. A message `produce()` refuses for good
    (larger than `message.max.bytes`) is counted `reason="produce"` and the
    record counts handled: retrying cannot help.
    """

    def __init__(
        self, settings: KafkaSettings, topic: str, replayer_id: str | None = None, **overrides: Any
    ) -> None:
        self.topic = dlq_topic(topic)
        self.replayer_id = (
            replayer_id if replayer_id is not None else f"{socket.gethostname()}/{os.getpid()}"
        )
        self.counts = DlqCounts()
        self._lock = threading.Lock()  # counts are written by the loop and the poll thread
        self._producer = BackgroundProducer(
            settings.producer_config(**overrides),
            name="dlq",
            logger=logger,
            on_report=self._on_report,
        )

    @property
    def closed(self) -> bool:
        """True once `close()` began: nothing more can be queued."""
        return self._producer.closed

    def send(self, record: Poisoned, reason: str, error: str, retry: bool = False) -> bool:
        """Queue the dead letter of `record`; True when queued or refused for good.

        False only when the local queue is full (or the sink is closed): the
        record must not count as handled yet; try again later (`retry=True`
        then, so the record's queue_full is counted once).
        """
        headers = dead_letter_headers(record, reason, error, self.replayer_id)
        why = self._producer.produce(
            self.topic, record.value, record.key, headers, record.timestamp_ms or 0
        )
        if why is None:
            with self._lock:
                self.counts.queued += 1
            return True
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if why in ("queue_full", "closed"):
            if why == "queue_full" and not retry:
                FAILED.labels(why).inc()
            self._producer.log_error(
                why, f"cannot queue the dead letter of {where} ({why}); not handled yet"
            )
            return False
        self._fail(why)
        logger.error("dead letter of %s refused by the producer; it is lost", where)
        return True

    def _fail(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.counts.failed += count
        FAILED.labels(reason).inc(count)

    def _on_report(self, report: Report) -> None:
        if report.status == "delivered":
            with self._lock:
                self.counts.written += 1
            WRITTEN.inc()
        elif report.status == "undelivered":
            self._fail("undelivered", report.count)
        else:
            self._fail("delivery")
            self._producer.log_error(
                ("delivery", report.error),
                f"dead letter not written to {self.topic}: {report.error}",
            )

    def line(self) -> str:
        """`dead letters to T.dlq: written N, failed N`."""
        with self._lock:
            return self.counts.line(self.topic)

    def close(self, timeout: float = 10.0) -> None:
        """Flush for at most `timeout` seconds; what is left is counted undelivered. Idempotent."""
        self._producer.close(timeout)
