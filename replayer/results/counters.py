"""The replay's own Prometheus metrics: records read, sent, failed, skipped, in flight.

What `Pipeline.handle()` counts as it takes each record through the flow
(`replayer.pipeline`): records consumed, requests the shadow answered,
requests that got no answer, records deliberately not sent (by reason), records
in flight, the shadow's latency and the lateness against the virtual clock.
Module-level, as `prometheus_client` wants: a process may run several replays
(tests, the demo) and a metric is registered in the default registry once.
What the comparison counts per result is in `results.build` (`record_metrics`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("trafficmirror_replayer_consumed", "Kafka records read by the replayer.")
SENT = Counter("trafficmirror_replayer_sent", "Requests the shadow answered (any status).")
ERRORS = Counter(
    "trafficmirror_replayer_errors", "Requests that got no answer: timeout or connection error."
)
SKIPPED = Counter(
    "trafficmirror_replayer_skipped",
    "Records deliberately not sent: truncated (the recorder kept only part of the body), "
    "unsupported (a request target that cannot be replayed), original-host (recorded from "
    "the target's own host), unsendable (no valid request can be made of it; to the DLQ), "
    "undecodable (not a valid event; to the DLQ); and what selection dropped: "
    "outside-window (--since/--until), sample (--sample), method (--methods), "
    "filter (--filter); and what the transforms skipped: unmapped-authority (no "
    "--target-map entry and no --target), transform (the hook skipped it or failed, or a "
    "rule made it unsendable), credentials (no token or key for it); unknown-kind (an event "
    "kind this version does not replay); websocket-no-upgrade (a WebSocket message whose "
    "upgrade was not replayed), websocket-not-connected (its connection failed or closed), "
    "websocket-too-many (too many sessions open).",
    ["reason"],
)
IN_FLIGHT = Gauge("trafficmirror_replayer_in_flight", "Records read but not yet handled.")
LATENCY = Histogram(
    "trafficmirror_replayer_request_seconds",
    "Time from sending a request to reading the shadow's whole response.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LATENESS = Histogram(
    "trafficmirror_replayer_lateness_seconds",
    "How much later than its due time on the virtual clock a request went out "
    "(only with a timed pace, not --speed max).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
