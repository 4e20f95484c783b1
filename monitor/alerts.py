"""Where findings go: `<topic>.alerts`, the log, and Prometheus metrics.

`AlertWriter.emit()` turns a `Finding` into a `schemas.records.Alert` (an id,
this monitor's name, the detection time), encodes it with the `alert`
schema and hands it to a non-blocking producer, keyed by the client (else
the endpoint) so one client's alerts stay in order. Every alert is counted
(`trafficmirror_monitor_alerts{kind,severity}`); the log gets one warning
line per alert, at most one per kind every `LOG_INTERVAL` seconds (a scan
makes hundreds), and the lines it leaves out are counted in the next one.
An alert the producer cannot queue or the broker rejects is counted as
undelivered, never retried from here: the monitor must keep up with traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from prometheus_client import Counter

from monitor.findings import Finding
from schemas.codec import Codec
from schemas.records import Alert, AlertSource, StatusCount
from trafficmirror.plumbing.kafka import KafkaSettings
from trafficmirror.plumbing.producer import BackgroundProducer, Report

logger = logging.getLogger(__name__)

#: Seconds between two log lines of the same alert kind.
LOG_INTERVAL = 10.0

ALERTS = Counter(
    "trafficmirror_monitor_alerts",
    "Alerts raised, by kind (client_rate, endpoint_rate, status_burst, new_client_hammering, "
    "sql_injection, xss, path_traversal, scanner) and severity (warning, critical).",
    ["kind", "severity"],
)
UNDELIVERED = Counter(
    "trafficmirror_monitor_alerts_undelivered",
    "Alerts that did not reach <topic>.alerts: queue_full, produce, failed (the broker "
    "rejected them or timed out), undelivered (still queued at shutdown).",
    ["reason"],
)


def alerts_topic(topic: str) -> str:
    """Topic that receives the monitor's alerts for traffic topic `topic`."""
    return f"{topic}.alerts"


def default_monitor_id() -> str:
    """host:pid, to tell the members of a group apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


def to_alert(finding: Finding, monitor_id: str, detected_at_us: int) -> Alert:
    """The alert record of `finding`."""
    source: AlertSource | None = None
    if finding.source is not None:
        source = {
            "topic": finding.source.topic,
            "partition": finding.source.partition,
            "offset": finding.source.offset,
        }
    statuses: list[StatusCount] = [{"status": s, "count": n} for s, n in finding.statuses]
    return {
        "id": str(uuid.uuid4()),
        "kind": finding.kind,
        "severity": finding.severity,
        "message": finding.message,
        "monitor_id": monitor_id,
        "detected_at_us": detected_at_us,
        "window_start_us": finding.window_start_us,
        "window_end_us": finding.window_end_us,
        "client": finding.client,
        "endpoint": finding.endpoint,
        "count": finding.count,
        "observed_rate": finding.observed_rate,
        "baseline_rate": finding.baseline_rate,
        "statuses": statuses,
        "location": finding.location,
        "detector": finding.detector,
        "exchange_ids": list(finding.exchange_ids),
        "source": source,
    }


@dataclass
class _Quiet:
    """Log lines of one kind left out since the last one written."""

    last: float
    skipped: int = 0


class AlertWriter:
    """Writes alerts to Kafka, the log and the metrics."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        monitor_id: str,
        schema_registry_url: str | None = None,
    ) -> None:
        self.topic = alerts_topic(topic)
        self.monitor_id = monitor_id
        self.codec = Codec(
            "alert",
            registry_url=schema_registry_url,
            subject=f"{self.topic}-value" if schema_registry_url else None,
        )
        self.raised = 0
        self.undelivered = 0
        self._lock = threading.Lock()
        self._quiet: dict[str, _Quiet] = {}
        self.producer = BackgroundProducer(
            settings.producer_config(),
            name="alerts",
            logger=logger,
            on_report=self._on_report,
        )

    def emit(self, finding: Finding) -> Alert:
        """Write one finding everywhere; returns the alert record."""
        alert = to_alert(finding, self.monitor_id, int(time.time() * 1_000_000))
        self.raised += 1
        ALERTS.labels(alert["kind"], alert["severity"]).inc()
        self._log(alert)
        encoded = self.codec.encode(alert)
        key = (alert["client"] or alert["endpoint"] or alert["kind"]).encode()
        problem = self.producer.produce(self.topic, encoded.value, key, encoded.headers)
        if problem is not None:
            self._count_undelivered(problem)
            self.producer.log_error(problem, f"alert not written to {self.topic}: {problem}")
        return alert

    def _log(self, alert: Alert) -> None:
        now = time.monotonic()
        quiet = self._quiet.get(alert["kind"])
        if quiet is not None and now - quiet.last < LOG_INTERVAL:
            quiet.skipped += 1
            return
        more = ""
        if quiet is not None and quiet.skipped:
            since = now - quiet.last
            more = f" (+{quiet.skipped} more {alert['kind']} alerts in the last {since:.0f}s)"
        self._quiet[alert["kind"]] = _Quiet(now)
        logger.warning(
            "ALERT %s %s: %s%s", alert["severity"], alert["kind"], alert["message"], more
        )

    def _on_report(self, report: Report) -> None:
        if report.status != "delivered":
            self._count_undelivered(report.status, report.count)
            if report.error:
                self.producer.log_error(report.status, f"alert not delivered: {report.error}")

    def _count_undelivered(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.undelivered += count
        UNDELIVERED.labels(reason).inc(count)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (for at most `timeout` seconds) and stop the producer."""
        self.producer.close(timeout)
