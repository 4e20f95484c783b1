"""Where recorded events go: a Kafka producer that never blocks its caller.

`KafkaSink.send()` runs on mitmproxy's event loop, once per exchange, so it only
hands the message to librdkafka's local queue (`produce()`): it never waits for
the broker, never flushes and never polls with a timeout. What can go wrong is
counted, never raised (`SinkStats`). A daemon thread calls `poll()` so delivery
reports (and librdkafka's logs and errors) are served off the live path. Every
counter is also a Prometheus metric in the default registry (see
`trafficmirror.plumbing.health`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from trafficmirror.plumbing.kafka import KafkaSettings
from trafficmirror.plumbing.logs import Throttle
from trafficmirror.plumbing.producer import BackgroundProducer, Report

logger = logging.getLogger(__name__)

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
SEEN = Counter(
    "trafficmirror_recorder_seen",
    "Exchanges the recorder took for recording (ended, or cut off by a stop, and kept by "
    "the filter). Once flushed, seen = recorded + dropped + failed; until then the "
    "difference is still queued.",
)
TRUNCATED = Counter(
    "trafficmirror_recorder_truncated",
    "Bodies recorded cut, flagged body_truncated (longer than --max-body-bytes, cut to fit "
    "a Kafka message, cut for want of --max-buffered-bytes, or broken off), by part "
    "(request or response).",
    ["part"],
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

#: librdkafka settings of the recorder over the shared producer defaults.
#: Every produce request (one per partition and linger window) costs the
#: producer's threads, on the proxy's cores, far more than the events in it, so
#: a longer linger makes fewer, fuller requests (the measured CPU per event is in
#: the docs). Events reach Kafka up to 100 ms later; nothing on the live path
#: waits for them, and a flush on shutdown does not wait the linger.
RECORDER_PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 100}


@dataclass
class SinkStats:
    """What happened to the events handed to a sink.

    * `queue_full`: the local queue was full (the broker is slow or away), the
      event was dropped;
    * `produce_failed`: `produce()` raised anything else (message too large ...);
    * `delivery_failed`: the broker did not acknowledge it before
      `message.timeout.ms`, or rejected it;
    * `undelivered`: still queued when the sink closed and the flush timeout
      ran out: purged.

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


def topic_message_limit(
    admin_config: dict[str, Any], topic: str, timeout: float = 3.0
) -> int | None:
    """The topic's effective `max.message.bytes`, or None when the cluster does not say.

    Kafka-compatible services and librdkafka's mock cluster may not answer
    DescribeConfigs (or not in time): then nothing is known, and nothing changes.
    """
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ConfigResource,
        ResourceType,
    )

    try:
        resource = ConfigResource(ResourceType.TOPIC, topic)
        futures = AdminClient(admin_config).describe_configs([resource], request_timeout=timeout)
        entry = futures[resource].result(timeout=timeout + 1).get("max.message.bytes")
        return int(entry.value) if entry is not None and entry.value else None
    except Exception as exc:  # not supported, not allowed, not in time
        logger.debug("trafficmirror: max.message.bytes of topic %s unknown: %s", topic, exc)
        return None


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
        self._kafka_reached = False
        self._throttle = Throttle()
        config = settings.producer_config(**{**RECORDER_PRODUCER_DEFAULTS, **overrides})
        #: produce() refuses a message larger than this (librdkafka's default); lowered
        #: to the topic's max.message.bytes once that is known to be smaller.
        self.max_message_bytes = int(config.get("message.max.bytes", 1_000_000))
        self._admin_config = settings.admin_client_config()
        self._producer = BackgroundProducer(
            config,
            name="sink",
            logger=logger,
            on_report=self._on_report,
            on_poll=self._on_poll,
            # Acknowledgements are counted in batches after each poll, not one
            # Python callback per event on a thread that shares the proxy's CPU.
            report_each_delivery=False,
        )
        self._stop = threading.Event()
        self._prober = threading.Thread(
            target=self._probe_loop, name="trafficmirror-sink-probe", daemon=True
        )
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
        why = self._producer.produce(self.topic, value, key, headers, timestamp_ms)
        if why is None:
            self.stats.enqueued += 1
            return True
        if why == "closed":
            self.stats.undelivered += 1
            _UNDELIVERED.inc()
        elif why == "queue_full":
            self.stats.queue_full += 1
            _QUEUE_FULL.inc()
            if self._throttle.allow():
                logger.warning(
                    "Kafka producer queue is full: dropping events (%d so far)",
                    self.stats.queue_full,
                )
        else:  # produce() raised; BackgroundProducer logged why
            self.stats.produce_failed += 1
            _PRODUCE_FAILED.inc()
        return False

    # -- background -----------------------------------------------------------

    def _on_report(self, report: Report) -> None:
        if report.status == "delivered":
            self.stats.delivered += report.count
            _RECORDED.inc(report.count)
            self._kafka_reached = True
        elif report.status == "undelivered":
            self.stats.undelivered += report.count
            _UNDELIVERED.inc(report.count)
        else:
            self.stats.delivery_failed += 1
            _DELIVERY_FAILED.inc()
            self._producer.log_error(
                ("delivery", report.error), f"event not delivered to Kafka: {report.error}"
            )

    def _on_poll(self) -> None:
        # The poll thread starts inside BackgroundProducer(), so its first poll
        # can return (an error report from an unreachable broker comes at once)
        # before __init__ has assigned self._producer.
        producer = self.__dict__.get("_producer")
        if producer is not None:
            QUEUE_LENGTH.set(len(producer))

    def _probe_loop(self) -> None:
        # Readiness wants to know the cluster answered at least once; ask for
        # metadata off the live path until it does (a delivery also counts).
        while not self._stop.is_set() and not self._kafka_reached:
            try:
                metadata = self._producer.producer.list_topics(self.topic, timeout=1.0)
            except Exception:  # unreachable: try again
                self._stop.wait(1.0)
                continue
            if metadata.brokers:
                self._kafka_reached = True
        if self._kafka_reached and not self._stop.is_set():
            self._check_topic_limit()

    def _check_topic_limit(self) -> None:
        """Say once, and cut events to it, when the topic accepts smaller messages than sized."""
        limit = topic_message_limit(self._admin_config, self.topic)
        if limit is None or limit >= self.max_message_bytes:
            return
        logger.warning(
            "trafficmirror: topic %s accepts messages up to %d bytes (max.message.bytes), "
            "fewer than the %d an event with two bodies at --max-body-bytes needs: larger "
            "events are recorded with their bodies cut to fit (counted truncated); raise "
            "the topic's max.message.bytes or lower --max-body-bytes",
            self.topic,
            limit,
            self.max_message_bytes,
        )
        self.max_message_bytes = limit

    @property
    def kafka_reached(self) -> bool:
        """True once the cluster answered a metadata request or acknowledged a message."""
        return self._kafka_reached

    # -- shutdown -------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> SinkStats:
        """Flush for at most `timeout` seconds, then give up on what is left.

        Messages still queued after the timeout are purged and counted as
        `undelivered`. Safe to call twice.
        """
        self._stop.set()
        self._producer.close(timeout)
        QUEUE_LENGTH.set(0)
        # The prober is not joined: it may sit in a metadata request for up to a
        # second, sees the stop flag when it returns, and holds its own reference
        # to the producer until then.
        return self.stats
