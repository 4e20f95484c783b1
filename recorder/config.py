"""`RecordConfig`: what `trafficmirror record` was asked to do, as one frozen object.

The CLI validates its flags and builds one `RecordConfig`; `recorder.run`
takes it whole instead of a long keyword list relayed through each layer.
`mitmproxy_options()` turns it into the values of the embedded mitmproxy's
options: the recorder's own (`recorder.options`) and mitmproxy's reverse mode
(with `mirror`, to a placeholder that is never contacted), listen address,
client TLS, `keep_host_header` and lazy upstream connections (why those two
differ from mitmdump's defaults: `recorder.run`).
Importing it loads no mitmproxy, so the CLI can build it before anything starts.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from trafficmirror.plumbing.kafka import KafkaSettings

#: The reverse-mode upstream of `record --mirror`: never contacted (`recorder.mirror`).
MIRROR_PLACEHOLDER = "http://mirror.invalid"


@dataclass(frozen=True)
class RecordConfig:
    """The options of one `record` run.

    Clients may connect with plain HTTP or TLS on the same port (mitmproxy's
    reverse mode tells them apart by the first bytes); TLS clients are shown
    `tls_certs` (mitmproxy's `certs`: `DOMAIN=PEM`) or a certificate made by
    the CA in `confdir`. `filter_expr` (a mitmproxy filter expression) records
    only the exchanges that match it. Sequences are kept as tuples.
    """

    settings: KafkaSettings
    topic: str
    #: The app to proxy to; None with `mirror`.
    upstream: str | None
    listen_host: str
    listen_port: int
    max_body_bytes: int
    recorder_id: str | None
    flush_timeout: float
    schema_registry_url: str | None
    metrics_host: str
    metrics_port: int | None
    redact_headers: Sequence[str] = ()
    redact_json: Sequence[str] = ()
    #: Query parameter and form field rules, `NAME[=MODE]` (`recorder.redact`).
    redact_params: Sequence[str] = ()
    redact_key_file: str | None = None
    redact_defaults: bool = True
    confdir: str | None = None
    tls_certs: Sequence[str] = ()
    filter_expr: str | None = None
    #: Body bytes kept for all exchanges in flight (`recorder.capture.CaptureBudget`).
    max_buffered_bytes: int = 64 * 1024 * 1024
    drain_timeout: float = 5.0
    #: Recorder processes sharing the listen port (`recorder.workers`); 1 runs in-process.
    workers: int = 1
    #: `record --mirror`: answer every request itself, contact no upstream (`recorder.mirror`).
    mirror: bool = False

    def __post_init__(self) -> None:
        if self.mirror == (self.upstream is not None):
            raise ValueError("RecordConfig needs either an upstream or mirror, not both")
        # Callers hand in lists (click's tuples, validated copies): freeze them too.
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))

    def mitmproxy_options(self) -> dict[str, Any]:
        """The mitmproxy option values for a recorder in front of `upstream` (or mirroring)."""
        extra: dict[str, Any] = {}
        # Mirroring: reverse mode to a placeholder that is never contacted (recorder.mirror).
        upstream = MIRROR_PLACEHOLDER if self.upstream is None else self.upstream
        if self.mirror:
            extra["trafficmirror_mirror"] = True
        if self.confdir:
            extra["confdir"] = self.confdir
        if self.tls_certs:
            extra["certs"] = list(self.tls_certs)
        settings = self.settings
        return {
            **extra,
            "mode": [f"reverse:{upstream}"],
            "listen_host": self.listen_host,
            "listen_port": self.listen_port,
            "keep_host_header": True,
            "connection_strategy": "lazy",
            "trafficmirror_bootstrap_servers": settings.bootstrap_servers,
            "trafficmirror_kafka_property": [f"{k}={v}" for k, v in settings.properties.items()],
            "trafficmirror_topic": self.topic,
            "trafficmirror_max_body_bytes": self.max_body_bytes,
            "trafficmirror_recorder_id": self.recorder_id
            or f"{socket.gethostname()}:{self.listen_port}",
            "trafficmirror_flush_timeout": repr(float(self.flush_timeout)),
            "trafficmirror_drain_timeout": repr(float(self.drain_timeout)),
            "trafficmirror_schema_registry_url": self.schema_registry_url,
            "trafficmirror_metrics_host": self.metrics_host,
            "trafficmirror_metrics_port": self.metrics_port,
            "trafficmirror_redact_header": list(self.redact_headers),
            "trafficmirror_redact_json": list(self.redact_json),
            "trafficmirror_redact_param": list(self.redact_params),
            "trafficmirror_redact_key_file": self.redact_key_file,
            "trafficmirror_redact_defaults": self.redact_defaults,
            "trafficmirror_filter": self.filter_expr,
            "trafficmirror_max_buffered_bytes": self.max_buffered_bytes,
        }
