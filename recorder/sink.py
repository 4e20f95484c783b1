"""Where recorded events go: a Kafka producer that never blocks its caller.

`KafkaSink.send()` runs on mitmproxy's event loop, once per exchange, so it only
hands the message to librdkafka's local queue (`produce()`): it never waits for
the broker, never flushes and never polls with a timeout. What can go wrong is
counted, never raised:

* the local queue is full (`BufferError`, the broker is slow or away): the
  event is dropped and counted as `queue_full`;
* `produce()` raises anything else (message too large, ...): counted as
  `produce_failed`;
* the broker does not acknowledge the message before `message.timeout.ms`, or
  rejects it: the delivery report counts it as `delivery_failed`;
* it is still queued when the sink closes and the flush timeout runs out: it
  is purged and counted as `undelivered`.

A daemon thread calls `poll()` so delivery reports (and librdkafka's logs and
errors) are served off the live path. Every counter is also a Prometheus
metric in the default registry (see `trafficmirror.health`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import Counter, Gauge

from trafficmirror.errors import ConfigError
from trafficmirror.kafka import KafkaSettings

logger = logging.getLogger("trafficmirror.recorder.sink")

# Metrics are module-level so that re-creating a sink (mitmproxy reconfigures
# or reloads a script) never registers a metric twice in the default registry.
RECORDED = Counter(
    "trafficmirror_recorder_recorded",
    "Events the broker acknowledged.",
)
DROPPED = Counter(
    "trafficmirror_recorder_dropped",
    "Events dropped without reaching Kafka: queue_full (local queue full) or "
    "undelivered (still queued when the recorder stopped).",
    ["reason"],
)
FAILED = Counter(
    "trafficmirror_recorder_failed",
    "Events that could not be written: produce (produce() raised), delivery (the broker "
    "rejected it or it timed out), convert (the exchange could not be turned into an event).",
    ["reason"],
)
QUEUE_LENGTH = Gauge(
    "trafficmirror_recorder_queue_messages",
    "Messages waiting in the producer's local queue or in flight to the broker.",
)
_RECORDED = RECORDED
_QUEUE_FULL = DROPPED.labels("queue_full")
_UNDELIVERED = DROPPED.labels("undelivered")
_PRODUCE_FAILED = FAILED.labels("produce")
_DELIVERY_FAILED = FAILED.labels("delivery")
#: Failures of the addon before anything reaches the sink (see recorder.addon).
CONVERT_FAILED = FAILED.labels("convert")

_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})

#: How often a repeated librdkafka error (all brokers down, ...) is logged.
_ERROR_LOG_INTERVAL = 30.0

#: librdkafka settings of the recorder over the shared producer defaults.
#: Every produce request (one per partition and linger window) costs the
#: producer's threads, on the proxy's cores, far more than the events in it:
#: at 1,000 events/s over 4 partitions a 20 ms linger cost about 45 µs of CPU
#: per event and 100 ms about 30 µs (measured with recorder.sink alone against
#: the in-memory broker). Events reach Kafka up to 100 ms later; nothing on the
#: live path waits for them, and a flush on shutdown does not wait the linger.
RECORDER_PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 100}


class _DebugLog:
    """What confluent_kafka needs of a logger (`.log()`), writing at debug level."""

    def __init__(self, target: logging.Logger) -> None:
        self._target = target

    def log(self, level: int, msg: str, *args: object) -> None:
        self._target.debug(msg, *args)


@dataclass
class SinkStats:
    """What happened to the events handed to a sink.

    Each counter has a single writer: `send()` runs on the caller's thread
    (mitmproxy's event loop), delivery reports on the poll thread, and `close()`
    only after the poll thread has stopped.
    """

    enqueued: int = 0
    delivered: int = 0
    queue_full: int = 0
    produce_failed: int = 0
    delivery_failed: int = 0
    undelivered: int = 0

    @property
    def recorded(self) -> int:
        """Events that reached Kafka."""
        return self.delivered

    @property
    def dropped(self) -> int:
        """Events lost without an error from Kafka: queue full, or still queued at exit."""
        return self.queue_full + self.undelivered

    @property
    def failed(self) -> int:
        """Events Kafka or the client refused."""
        return self.produce_failed + self.delivery_failed


class KafkaSink:
    """A non-blocking Kafka producer for recorded events.

    `overrides` are librdkafka properties applied over the recorder defaults of
    `KafkaSettings.producer_config()` and `RECORDER_PRODUCER_DEFAULTS` (the
    user's `-X` properties still win).
    """

    def __init__(self, settings: KafkaSettings, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self.bootstrap_servers = settings.bootstrap_servers
        self.stats = SinkStats()
        self._closed = False
        self._kafka_reached = False
        self._last_error_log: dict[int, float] = {}
        config = settings.producer_config(**{**RECORDER_PRODUCER_DEFAULTS, **overrides})
        #: produce() refuses a message larger than this (librdkafka's default).
        self.max_message_bytes = int(config.get("message.max.bytes", 1_000_000))
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        # librdkafka's own log lines go through `logging` (served by poll())
        # instead of straight to stderr, at debug level: the errors among them
        # also reach error_cb, which logs them rate-limited.
        config["logger"] = _DebugLog(logging.getLogger("trafficmirror.recorder.librdkafka"))
        try:
            self._producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"bad Kafka producer settings: {_reason(exc)}") from None
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_loop, name="trafficmirror-sink-poll", daemon=True
        )
        self._prober = threading.Thread(
            target=self._probe_loop, name="trafficmirror-sink-probe", daemon=True
        )
        self._poller.start()
        self._prober.start()

    # -- the live path --------------------------------------------------------

    def send(
        self,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 0,
    ) -> bool:
        """Queue one message; True if queued. Never blocks, never raises."""
        if self._closed:
            self.stats.undelivered += 1
            _UNDELIVERED.inc()
            return False
        try:
            # cast: confluent_kafka's stub wants a list of str|bytes|None values;
            # any sequence of (str, bytes) pairs is accepted at run time.
            self._producer.produce(
                self.topic, value, key, headers=cast(Any, headers), timestamp=timestamp_ms
            )
        except BufferError:
            self.stats.queue_full += 1
            _QUEUE_FULL.inc()
            if self.stats.queue_full == 1 or self.stats.queue_full % 10_000 == 0:
                logger.warning(
                    "Kafka producer queue is full: dropping events (%d so far)",
                    self.stats.queue_full,
                )
            return False
        except Exception as exc:  # the live flow must never see it
            self.stats.produce_failed += 1
            _PRODUCE_FAILED.inc()
            self._log_error(-1, f"cannot queue event for Kafka: {_reason(exc)}")
            return False
        self.stats.enqueued += 1
        return True

    # -- background -----------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
            _RECORDED.inc()
            self._kafka_reached = True
        elif err.code() in _PURGED:
            self.stats.undelivered += 1
            _UNDELIVERED.inc()
        else:
            self.stats.delivery_failed += 1
            _DELIVERY_FAILED.inc()
            self._log_error(err.code(), f"event not delivered to Kafka: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        self._log_error(err.code(), f"Kafka: {err.str()}")

    def _log_error(self, code: int, message: str) -> None:
        # Once per error kind and interval: a broker outage must not flood the log.
        now = time.monotonic()
        if now - self._last_error_log.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._last_error_log[code] = now
            logger.warning("%s", message)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
                QUEUE_LENGTH.set(len(self._producer))
            except Exception:  # a callback bug must not stop delivery reports
                logger.exception("error while serving Kafka delivery reports")

    def _probe_loop(self) -> None:
        # Readiness wants to know the cluster answered at least once; ask for
        # metadata off the live path until it does (a delivery also counts).
        while not self._stop.is_set() and not self._kafka_reached:
            try:
                metadata = self._producer.list_topics(self.topic, timeout=1.0)
            except Exception:  # unreachable: try again
                self._stop.wait(1.0)
                continue
            if metadata.brokers:
                self._kafka_reached = True

    @property
    def kafka_reached(self) -> bool:
        """True once the cluster answered a metadata request or acknowledged a message."""
        return self._kafka_reached

    def queue_length(self) -> int:
        """Messages queued locally or in flight."""
        return len(self._producer)

    # -- shutdown -------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> SinkStats:
        """Flush for at most `timeout` seconds, then give up on what is left.

        Messages still queued after the timeout are purged and counted as
        `undelivered`. Safe to call twice.
        """
        if self._closed:
            return self.stats
        self._closed = True
        self._stop.set()
        self._poller.join()
        remaining = self._producer.flush(timeout)
        if remaining:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            # Serve the purge reports (counted as undelivered by _on_delivery).
            self._producer.flush(1.0)
        # Whatever was queued and never reported either way is undelivered too.
        unreported = (
            self.stats.enqueued
            - self.stats.delivered
            - self.stats.delivery_failed
            - self.stats.undelivered
        )
        if unreported > 0:
            self.stats.undelivered += unreported
            _UNDELIVERED.inc(unreported)
        QUEUE_LENGTH.set(0)
        # The prober is not joined: it may sit in a metadata request for up to a
        # second, sees the stop flag when it returns, and holds its own reference
        # to the producer until then.
        return self.stats


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return str(exc) or type(exc).__name__
