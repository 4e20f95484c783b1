"""RecordConfig: the `record` command's options as one frozen object, and mitmproxy's values."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from recorder.config import RecordConfig
from trafficmirror.plumbing.kafka import KafkaSettings


def config(**changes: object) -> RecordConfig:
    values: dict[str, object] = {
        "settings": KafkaSettings("b:9092", {"linger.ms": "5"}),
        "topic": "traffic",
        "upstream": "http://127.0.0.1:8080",
        "listen_host": "127.0.0.1",
        "listen_port": 8081,
        "max_body_bytes": 1024,
        "recorder_id": None,
        "flush_timeout": 2,
        "schema_registry_url": None,
        "metrics_host": "127.0.0.1",
        "metrics_port": None,
    }
    values.update(changes)
    return RecordConfig(**values)  # type: ignore[arg-type]


def test_it_is_frozen_and_keeps_sequences_as_tuples() -> None:
    cfg = config(redact_headers=["X-Token=hmac"], tls_certs=["*=/tmp/c.pem"])
    assert cfg.redact_headers == ("X-Token=hmac",)
    assert cfg.tls_certs == ("*=/tmp/c.pem",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.topic = "other"  # type: ignore[misc]


def test_mitmproxy_options() -> None:
    values = config(redact_json=["$.password"], filter_expr="~m POST").mitmproxy_options()
    assert values["mode"] == ["reverse:http://127.0.0.1:8080"]
    assert (values["listen_host"], values["listen_port"]) == ("127.0.0.1", 8081)
    # A transparent sidecar: the client's Host reaches the app; upstream opened per request.
    assert values["keep_host_header"] is True
    assert values["connection_strategy"] == "lazy"
    assert values["trafficmirror_bootstrap_servers"] == "b:9092"
    assert values["trafficmirror_kafka_property"] == ["linger.ms=5"]
    assert values["trafficmirror_recorder_id"] == f"{socket.gethostname()}:8081"
    assert values["trafficmirror_flush_timeout"] == "2.0"
    assert values["trafficmirror_redact_json"] == ["$.password"]
    assert values["trafficmirror_redact_defaults"] is True
    assert values["trafficmirror_filter"] == "~m POST"
    assert "confdir" not in values and "certs" not in values
    tls = config(confdir="/tmp/ca", tls_certs=["*=/tmp/c.pem"], recorder_id="r1")
    values = tls.mitmproxy_options()
    assert values["confdir"] == "/tmp/ca" and values["certs"] == ["*=/tmp/c.pem"]
    assert values["trafficmirror_recorder_id"] == "r1"
