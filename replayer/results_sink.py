"""Where replay results go: `<topic>.results`, through a producer that never blocks the replay.

`ResultSink.send()` runs on the replayer's event loop, once per replayed record,
just before the record counts as handled (so its offset may be committed). It
only hands the message to librdkafka's local queue: a crash after that re-sends
the request and writes the result again rather than losing it, and readers keep
one result per exchange (see `replayer.results.Aggregate`). It never waits for
the broker; what goes wrong is counted and logged (rate-limited), never raised:

* the local queue is full (the broker has been away for a long while): the
  result is dropped and counted as `queue_full`;
* `produce()` raises anything else (message too large): `produce`;
* the broker rejects the message or it times out: `delivery`;
* it is still queued when the sink closes and the flush timeout runs out:
  `undelivered`.

A daemon thread serves `poll()` (delivery reports, librdkafka errors). `close()`
flushes; the group worker calls it before its final commit.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import Counter

from replayer.results import ResultMessage
from trafficmirror.errors import ConfigError
from trafficmirror.kafka import KafkaSettings

logger = logging.getLogger("trafficmirror.replayer.results")

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

_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
_ERROR_LOG_INTERVAL = 30.0


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


class _DebugLog:
    """What confluent_kafka needs of a logger (`.log()`), writing at debug level."""

    def __init__(self, target: logging.Logger) -> None:
        self._target = target

    def log(self, level: int, msg: str, *args: object) -> None:
        self._target.debug(msg, *args)


class ResultSink:
    """A non-blocking producer of result messages (each names its own topic)."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        self.counts = SinkCounts()
        self._closed = False
        self._lock = threading.Lock()  # counts are written by the loop and the poll thread
        self._last_error_log: dict[int, float] = {}
        self._reported = 0  # enqueued results with a delivery report, either way
        config = settings.producer_config(**overrides)
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        config["logger"] = _DebugLog(logging.getLogger("trafficmirror.replayer.librdkafka"))
        try:
            self._producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"bad Kafka producer settings: {exc}") from None
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_loop, name="trafficmirror-results-poll", daemon=True
        )
        self._poller.start()

    def send(self, message: ResultMessage) -> bool:
        """Queue one result; True if queued. Never blocks, never raises."""
        if self._closed:
            self._lose("undelivered")
            return False
        try:
            self._producer.produce(
                message.topic, message.value, message.key, headers=cast(Any, message.headers)
            )
        except BufferError:
            self._lose("queue_full")
            self._log_error(-2, "Kafka producer queue is full: dropping replay results")
            return False
        except Exception as exc:  # one bad result must not stop the replay
            self._lose("produce")
            self._log_error(-1, f"cannot queue a result for {message.topic}: {exc}")
            return False
        with self._lock:
            self.counts.enqueued += 1
        return True

    def _lose(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.counts.lost += count
        LOST.labels(reason).inc(count)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        with self._lock:
            self._reported += 1
        if err is None:
            with self._lock:
                self.counts.delivered += 1
            WRITTEN.inc()
        elif err.code() in _PURGED:
            self._lose("undelivered")
        else:
            self._lose("delivery")
            self._log_error(err.code(), f"result not written to {msg.topic()}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        self._log_error(err.code(), f"Kafka (results producer): {err.str()}")

    def _log_error(self, code: int, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._last_error_log[code] = now
            logger.warning("%s", message)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # a callback bug must not stop delivery reports
                logger.exception("error while serving Kafka delivery reports")

    def close(self, timeout: float = 10.0) -> None:
        """Flush for at most `timeout` seconds; what is left is purged and counted. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._poller.join()
        if self._producer.flush(timeout):
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(1.0)  # serves the purge reports
        with self._lock:
            unreported = self.counts.enqueued - self._reported
        if unreported > 0:
            self._lose("undelivered", unreported)
