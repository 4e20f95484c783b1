"""Kafka connection settings shared by the recorder and the replayer.

One `KafkaSettings` object builds the librdkafka configuration for every client
trafficmirror creates, so the two sides of the pipeline can never disagree about
security or tuning. Any librdkafka property can be added as `-X key=value` (the
way kcat does it) or from a Java-style properties file; secrets are masked
whenever settings are shown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trafficmirror.errors import ConfigError, KafkaUnavailable, TopicNotFound

#: Property names whose values are never printed.
_SECRET_MARKERS = ("password", "secret", "sasl.oauthbearer.config", "key.pem", "token")

#: Header names set on every event message.
CONTENT_TYPE_HEADER = "content-type"
FINGERPRINT_HEADER = "trafficmirror-schema-fingerprint"


def results_topic(topic: str) -> str:
    """Topic that receives replay outcomes for traffic topic `topic`."""
    return f"{topic}.results"


def dlq_topic(topic: str) -> str:
    """Topic that receives records which could not be decoded or sent."""
    return f"{topic}.dlq"


def control_topic(topic: str) -> str:
    """Compacted topic holding the replay session settings shared by workers."""
    return f"{topic}.control"


def parse_properties(lines: Iterable[str], origin: str) -> dict[str, str]:
    """Parse `key=value` lines (Java properties subset: `#`/`!` comments, blank lines)."""
    props: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{origin}:{number}: expected key=value, got {line!r}")
        props[key.strip()] = value.strip()
    return props


def is_secret(key: str) -> bool:
    """True if a librdkafka property holds a credential that must not be shown."""
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def mask(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with every secret value replaced by `***`."""
    return {k: ("***" if is_secret(k) else v) for k, v in config.items()}


@dataclass(frozen=True)
class KafkaSettings:
    """Where the cluster is and how to talk to it.

    `properties` are raw librdkafka properties (from `-X` or a properties file);
    they win over every default set here, so an operator can always override a
    tuning choice without a code change.
    """

    bootstrap_servers: str
    properties: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        bootstrap_servers: str | None,
        extra: Iterable[str] = (),
        config_file: str | None = None,
    ) -> KafkaSettings:
        """Build settings from CLI-style input: `-X key=value` items and a properties file."""
        props: dict[str, str] = {}
        if config_file:
            path = Path(config_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read Kafka config file {config_file}: {exc.strerror}"
                ) from None
            props.update(parse_properties(text.splitlines(), config_file))
        props.update(parse_properties(extra, "-X"))
        servers = bootstrap_servers or props.pop("bootstrap.servers", "")
        props.pop("bootstrap.servers", None)
        if not servers:
            raise ConfigError("no Kafka bootstrap servers given (--bootstrap-servers)")
        return cls(bootstrap_servers=servers, properties=props)

    def _base(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, "client.id": "trafficmirror"}

    def producer_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka config for the recorder's producer.

        Tuned for a live path that must never wait: idempotent (no duplicates or
        reordering on retry), compressed, a short linger to batch, and a bounded
        local queue so memory cannot grow without limit while the broker is away.
        """
        config = self._base()
        config.update(
            {
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": 20,
                "queue.buffering.max.messages": 100_000,
                "queue.buffering.max.kbytes": 256 * 1024,
                # Retry for as long as a record may wait in the queue; after that
                # the delivery report says it failed and it is counted.
                "message.timeout.ms": 300_000,
            }
        )
        config.update(overrides)
        config.update(self.properties)
        return config

    def consumer_config(
        self, group: str | None, protocol: str = "consumer", **overrides: Any
    ) -> dict[str, Any]:
        """librdkafka config for a replayer consumer.

        Offsets are stored by hand (`enable.auto.offset.store=false`) once every
        earlier offset of the partition has finished, and committed in the
        background; without a group a random one is used and nothing is committed.
        """
        if protocol not in ("consumer", "classic"):
            raise ConfigError(f"unknown group protocol {protocol!r} (use consumer or classic)")
        config = self._base()
        config.update(
            {
                "group.id": group or f"trafficmirror-{uuid.uuid4().hex}",
                "enable.auto.commit": bool(group),
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        if group and protocol == "consumer":
            config["group.protocol"] = "consumer"
        elif group:
            config["partition.assignment.strategy"] = "cooperative-sticky"
            config["group.protocol"] = "classic"
        config.update(overrides)
        config.update(self.properties)
        return config

    def admin_config(self) -> dict[str, Any]:
        """librdkafka config for metadata look-ups."""
        config = self._base()
        config.update(self.properties)
        return config

    def describe(self) -> dict[str, Any]:
        """The effective base settings with secrets masked, for logs and `--help` dumps."""
        return mask(self.admin_config())


def env_bootstrap_servers() -> str | None:
    """`KAFKA_BOOTSTRAP_SERVERS` from the environment, if set and non-empty."""
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    return value or None


def topic_partitions(
    consumer: Any, topic: str, bootstrap: str = "the cluster", timeout: float = 10.0
) -> list[int]:
    """Partition ids of `topic`, raising `TopicNotFound` if the cluster has no such topic."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except Exception as exc:  # confluent_kafka raises KafkaException on timeouts
        raise KafkaUnavailable(f"cannot read metadata for topic {topic!r}: {exc}") from exc
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise TopicNotFound(f"topic {topic!r} does not exist on {bootstrap}")
    return sorted(info.partitions)
