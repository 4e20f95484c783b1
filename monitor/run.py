"""The monitor process: a consumer-group member that reads the traffic topic and raises alerts.

Members of one group share the topic's partitions, as workers do, so the
monitor scales the same way; each judges the exchanges of its partitions
(the message key is the client connection, so a client's requests over
several connections may be split between members: the rate rules then see
each member's share). One thread does everything: poll, decode, name the
client and endpoint, run the signatures and the rate rules, hand alerts to
the writer; judging a second needs nothing but the records, so there is no
other state to share. Offsets are stored as records are read and committed
in the background: after a crash a few seconds of traffic may be judged
again or not at all, which a monitor can afford and a replay could not.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from monitor.alerts import AlertWriter, alerts_topic, default_monitor_id
from monitor.anomalies import RateRules
from monitor.config import MonitorConfig
from monitor.findings import Finding, Source
from monitor.identity import ClientIdentity
from monitor.signatures import Signatures
from replayer.comparing.endpoints import Router
from replayer.stopping import StopSignals
from schemas.codec import Codec
from schemas.records import KIND_HTTP
from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import DecodeError, KafkaUnavailable
from trafficmirror.plumbing.health import HealthServer, HealthState
from trafficmirror.plumbing.kafka import topic_partitions
from trafficmirror.plumbing.logs import Throttle
from trafficmirror.plumbing.runtime import settle_memory

logger = logging.getLogger(__name__)

#: Records one poll returns at most, and how long it waits for the first.
POLL_BATCH = 500
POLL_SECONDS = 0.2

EXCHANGES = Counter("trafficmirror_monitor_exchanges", "Exchanges the monitor judged.")
UNDECODABLE = Counter(
    "trafficmirror_monitor_undecodable", "Records of the traffic topic that could not be decoded."
)
MATCHES = Counter(
    "trafficmirror_monitor_signature_matches",
    "Requests a signature detector matched, by kind; alerts are fewer (one per kind, client "
    "and endpoint per cooldown).",
    ["kind"],
)
TRACKED = Gauge(
    "trafficmirror_monitor_tracked_keys",
    "Clients, endpoints and client-endpoint pairs whose rates are tracked.",
)
BEHIND = Gauge(
    "trafficmirror_monitor_behind_seconds",
    "Wall-clock time minus the start time of the newest exchange judged: how far the "
    "monitor is behind the traffic (grows while the traffic is quiet, too).",
)


@dataclass
class MonitorStats:
    """What a run did."""

    exchanges: int = 0
    undecodable: int = 0
    alerts: int = 0
    undelivered: int = 0
    #: WebSocket message and end events: not exchanges, so not judged (their upgrade is).
    websocket: int = 0

    def line(self) -> str:
        ws = f", {self.websocket} WebSocket events not judged" if self.websocket else ""
        return (
            f"{self.exchanges} exchanges judged, {self.alerts} alerts raised "
            f"({self.undelivered} not delivered), {self.undecodable} records undecodable{ws}"
        )


class Monitor:
    """One group member (see the module doc)."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        t = config.thresholds
        self.identity = ClientIdentity(config.client_header, config.client_key)
        self.router = Router(config.routes)
        self.signatures = Signatures(t.signatures, t.max_body_bytes)
        self.rules = RateRules(t)
        self.codec = Codec("http_exchange", registry_url=config.schema_registry_url)
        self.stats = MonitorStats()
        self.health = HealthState()
        self.health.set_ready_check(self._readiness)
        self.assigned: set[int] = set()
        self.stopping = False
        self._lock = threading.Lock()
        self._throttle = Throttle()
        self._writer: AlertWriter | None = None
        #: (kind, client, endpoint) -> recorded second of its last signature alert.
        self._cooldown: dict[tuple[str, str | None, str | None], int] = {}

    def _readiness(self) -> str | None:
        if self.stopping:
            return "stopping"
        with self._lock:
            return None if self.assigned else "no partitions assigned yet"

    def run(self, stop: StopSignals) -> MonitorStats:
        """Follow the topic until `stop` is set; then leave the group and flush the alerts."""
        config = self.config
        consumer_config = config.settings.consumer_config(
            config.group,
            config.group_protocol,
            **{"enable.auto.offset.store": True, "auto.offset.reset": config.start},
        )
        consumer = Consumer(consumer_config)
        try:
            topic_partitions(consumer, config.topic, config.settings.bootstrap_servers)
            self._writer = AlertWriter(
                config.settings,
                config.topic,
                config.monitor_id or default_monitor_id(),
                config.schema_registry_url,
            )
            consumer.subscribe(
                [config.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            logger.info(
                "monitor joined group %r on topic %r; alerts to %s (%s)",
                config.group,
                config.topic,
                alerts_topic(config.topic),
                "clients by " + (config.client_header or "address"),
            )
            settle_memory()
            self._loop(consumer, stop)
        finally:
            self.stopping = True
            consumer.close()
            if self._writer is not None:
                self._writer.close()
                self.stats.alerts = self._writer.raised
                self.stats.undelivered = self._writer.undelivered
        logger.info("monitor stopped: %s", self.stats.line())
        return self.stats

    def _loop(self, consumer: Any, stop: StopSignals) -> None:
        from confluent_kafka import KafkaException

        while not stop.is_set():
            self.health.beat()
            try:
                messages = consumer.consume(POLL_BATCH, POLL_SECONDS)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if error is not None and hasattr(error, "fatal") and error.fatal():
                    raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}") from exc
                if self._throttle.allow("consume"):
                    logger.warning("Kafka: %s", exc)
                continue
            for message in messages:
                if message.error() is not None:
                    if self._throttle.allow(("error", message.error().code())):
                        logger.warning("Kafka: %s", message.error().str())
                    continue
                self.judge(message)
            self._emit(self.rules.tick())
            TRACKED.set(len(self.rules.tracker))

    def judge(self, message: Any) -> None:
        """Decode one record and run every detector on it."""
        try:
            event = self.codec.decode_exchange(message.value())
        except DecodeError as exc:
            self.stats.undecodable += 1
            UNDECODABLE.inc()
            if self._throttle.allow("decode"):
                logger.warning(
                    "record %d@%d of %s is not an event: %s",
                    message.partition(),
                    message.offset(),
                    message.topic(),
                    exc,
                )
            return
        if event["kind"] != KIND_HTTP:
            self.stats.websocket += 1
            return
        self.stats.exchanges += 1
        EXCHANGES.inc()
        client = self.identity(event)
        endpoint = self.router(event["method"], event["path"])
        response = event["response"]
        status = response["status"] if response is not None else None
        source = Source(message.topic(), message.partition(), message.offset())
        start = event["request_start_us"]
        BEHIND.set(max(0.0, time.time() - start / 1_000_000))
        self._emit(self._fresh(self.signatures.scan(event, client, endpoint, source)))
        self._emit(self.rules.observe(client, endpoint, start, status, event["id"], source))

    def _fresh(self, findings: list[Finding]) -> list[Finding]:
        """The signature findings not raised for their kind, client and endpoint lately."""
        if not findings:
            return findings
        limits = self.config.thresholds
        fresh = []
        for finding in findings:
            MATCHES.labels(finding.kind).inc()
            key = (finding.kind, finding.client, finding.endpoint)
            second = finding.window_start_us // 1_000_000
            last = self._cooldown.get(key)
            if last is not None and 0 <= second - last < limits.cooldown_seconds:
                continue
            self._cooldown[key] = second
            fresh.append(finding)
        if len(self._cooldown) > limits.max_keys:
            horizon = max(self._cooldown.values()) - limits.cooldown_seconds
            self._cooldown = {k: v for k, v in self._cooldown.items() if v >= horizon}
        return fresh

    def _emit(self, findings: list[Finding]) -> None:
        writer = self._writer
        if writer is None:
            return
        for finding in findings:
            writer.emit(finding)

    # -- rebalances (on this thread, inside consume()) ---------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            self.assigned.update(tp.partition for tp in partitions)
        logger.info("assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            self.assigned.difference_update(tp.partition for tp in partitions)


def run_monitor(config: MonitorConfig, stop_event: threading.Event | None = None) -> MonitorStats:
    """Run the monitor until SIGTERM/SIGINT (in the main thread) or `stop_event`.

    Raises `TopicNotFound` if the traffic topic does not exist and
    `KafkaUnavailable` when the cluster cannot be reached.
    """
    monitor = Monitor(config)
    health = None
    if config.metrics_port is not None:
        health = HealthServer(
            monitor.health, host=config.metrics_host, port=config.metrics_port
        ).start()
        logger.info("health and metrics on http://%s:%d/metrics", config.metrics_host, health.port)
    try:
        with StopSignals(stop_event, "leaving the group") as stop:
            return monitor.run(stop)
    finally:
        if health is not None:
            health.close()
