"""Where replay results go: `<topic>.results`, through a producer that never blocks the replay.

`ResultSink.send()` runs on the replayer's event loop, once per replayed record,
just before the record counts as handled (so its offset may be committed). It
only hands the message to librdkafka's local queue: a crash after that re-sends
the request and writes the result again rather than losing it, and readers keep
one result per exchange (`replayer.results.aggregate.Aggregate`). It never waits
for the broker; what goes wrong is counted by reason (the `LOST` metric) and
logged (rate-limited), never raised. A daemon thread serves `poll()`;
`close()` flushes, and the group worker calls it before its final commit.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from replayer.results.build import ResultMessage
from trafficmirror.plumbing.kafka import KafkaSettings
from trafficmirror.plumbing.producer import BackgroundProducer, Report

logger = logging.getLogger(__name__)

WRITTEN = Counter(
    "trafficmirror_replayer_results_written",
    "Replay results the broker acknowledged in <topic>.results.",
)
LOST = Counter(
    "trafficmirror_replayer_results_lost",
    "Replay results that did not reach <topic>.results: queue_full, produce (produce() "
    "raised), delivery (the broker rejected it or it timed out), undelivered (still queued "
    "at exit).",
    ["reason"],
)


class Publisher(Protocol):
    """What the comparison stage needs of a results sink (tests plug in a list)."""

    def send(self, message: ResultMessage) -> bool: ...

    def close(self, timeout: float = 10.0) -> None: ...


@dataclass
class SinkCounts:
    """What happened to the results handed to a sink; one writer per counter."""

    enqueued: int = 0
    delivered: int = 0
    lost: int = 0  # every reason of the LOST metric

    def line(self) -> str:
        return f"written {self.delivered}, lost {self.lost}"


class ResultSink:
    """A non-blocking producer of result messages (each names its own topic).

    A result that does not arrive is counted by reason: `queue_full` (the local
    queue is full: the broker has been away for a long while), `produce`
    (`produce()` raised anything else, e.g. message too large), `delivery` (the
    broker rejected it or it timed out), `undelivered` (still queued when the
    sink closed and the flush timeout ran out).
    """

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        self.counts = SinkCounts()
        self._lock = threading.Lock()  # counts are written by the loop and the poll thread
        self._producer = BackgroundProducer(
            settings.producer_config(**overrides),
            name="results",
            logger=logger,
            on_report=self._on_report,
            # Acknowledgements counted in batches: no Python callback per result.
            report_each_delivery=False,
        )

    def send(self, message: ResultMessage) -> bool:
        """Queue one result; True if queued. Never blocks, never raises."""
        why = self._producer.produce(message.topic, message.value, message.key, message.headers)
        if why is None:
            with self._lock:
                self.counts.enqueued += 1
            return True
        self._lose("undelivered" if why == "closed" else why)
        if why == "queue_full":
            self._producer.log_error(
                "queue_full", "Kafka producer queue is full: dropping replay results"
            )
        return False

    def _lose(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.counts.lost += count
        LOST.labels(reason).inc(count)

    def _on_report(self, report: Report) -> None:
        if report.status == "delivered":
            with self._lock:
                self.counts.delivered += report.count
            WRITTEN.inc(report.count)
        elif report.status == "undelivered":
            self._lose("undelivered", report.count)
        else:
            self._lose("delivery")
            self._producer.log_error(
                ("delivery", report.error), f"result not written to {report.topic}: {report.error}"
            )

    def close(self, timeout: float = 10.0) -> None:
        """Flush for at most `timeout` seconds; what is left is purged and counted. Idempotent."""
        self._producer.close(timeout)
