"""What a detector found, before it becomes an alert record.

The rate rules (`monitor.anomalies`) and the signature detectors
(`monitor.signatures`) both hand back `Finding`s; `monitor.alerts` adds the
alert's id, the monitor's name and the detection time, and writes it out.
A finding holds names and figures only (client id, endpoint template,
where a signature matched, which detector), never a header value, cookie,
body or raw path: nothing in it can carry a secret of the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Alert kinds of the rate rules.
RATE_KINDS = ("client_rate", "endpoint_rate", "status_burst", "new_client_hammering")
#: Every alert kind (the signature kinds are `monitor.config.SIGNATURES`).
KINDS = (*RATE_KINDS, "sql_injection", "xss", "path_traversal", "scanner")


@dataclass(frozen=True)
class Source:
    """Where the exchange behind a finding is stored."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Finding:
    """One anomaly or signature match (see `schemas/alert.v1.avsc` for each field)."""

    kind: str
    severity: str
    message: str
    window_start_us: int
    window_end_us: int
    client: str | None = None
    endpoint: str | None = None
    count: int = 1
    observed_rate: float | None = None
    baseline_rate: float | None = None
    statuses: tuple[tuple[int, int], ...] = ()
    location: str | None = None
    detector: str | None = None
    exchange_ids: tuple[str, ...] = field(default_factory=tuple)
    source: Source | None = None
