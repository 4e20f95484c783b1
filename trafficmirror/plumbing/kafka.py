"""Kafka connection settings shared by the recorder and the replayer.

One `KafkaSettings` object builds the librdkafka configuration for every client
trafficmirror creates, so the two sides of the pipeline can never disagree about
security or tuning. Any librdkafka property can be added as `-X key=value` (the
way kcat does it) or from a Java-style properties file; secrets are masked
whenever settings are shown.

Security flags become properties too, checked by
`trafficmirror.plumbing.security`. Every consumer and admin config gets its own
`ClientErrors`, the error callback that turns librdkafka's error reports into
readable, rate-limited log lines; `topic_partitions` reads the one of the
client it asks (`trafficmirror.plumbing.clients.Consumer` keeps it), so a
cluster that refuses us fails at once with the reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trafficmirror.plumbing.errors import ConfigError, KafkaUnavailable, TopicNotFound
from trafficmirror.plumbing.logs import DebugLog, Throttle
from trafficmirror.plumbing.security import check_security

logger = logging.getLogger(__name__)
#: Where librdkafka's own log lines go (debug level).
_librdkafka = logging.getLogger(f"{__name__}.librdkafka")

#: Property names whose values are never printed.
_SECRET_MARKERS = ("password", "secret", "sasl.oauthbearer.config", "key.pem", "token")
#: ... except these, which only look like secrets.
_NOT_SECRET = frozenset({"sasl.oauthbearer.token.endpoint.url"})

#: librdkafka error codes that mean the cluster refused us, not that it is away:
#: authentication (-169), SSL (-181), SASL authentication failed (58).
_REFUSED_CODES = frozenset({-169, -181, 58})
_ALL_BROKERS_DOWN = -187

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
    return lowered not in _NOT_SECRET and any(marker in lowered for marker in _SECRET_MARKERS)


def mask(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with every secret value replaced by `***` (callbacks left out)."""
    return {
        k: ("***" if is_secret(k) else v)
        for k, v in config.items()
        if isinstance(v, str | int | float | bool)
    }


class ClientErrors:
    """The librdkafka error callback (`error_cb`) of one client.

    Until that client first got metadata from the cluster (`topic_partitions`
    succeeded), errors are only kept: the caller waiting for metadata ends
    with one line that gives the reason, at once when the cluster refused us
    (authentication, TLS), else when its timeout runs out. After that they are
    logged as warnings, at most once per error kind and interval (an outage
    must not flood the log).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttle = Throttle()
        self.connected = False
        self.refused: str | None = None
        self.last: str | None = None

    def __call__(self, err: Any) -> None:
        code, text = err.code(), str(err.str())
        with self._lock:
            if code != _ALL_BROKERS_DOWN:
                self.last = text
            if code in _REFUSED_CODES or err.fatal() or "SSL handshake failed" in text:
                self.refused = text
            connected = self.connected
        if not connected:
            logger.debug("Kafka: %s", text)
        elif self._throttle.allow(code):
            logger.warning("Kafka: %s", text)


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
        check_security(props)
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
                # librdkafka backs off up to 10 s between reconnects; after an
                # outage that is up to 10 s more of a full queue and dropped
                # events. A reconnect attempt every 2 s at most is cheap.
                "reconnect.backoff.max.ms": 2000,
            }
        )
        config.update(overrides)
        config.update(self.properties)
        _log_config("producer", config)
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
        _log_config("consumer", config)
        return _with_callbacks(config)

    def admin_config(self) -> dict[str, Any]:
        """librdkafka config for metadata look-ups."""
        config = self._base()
        config.update(self.properties)
        return config

    def admin_client_config(self) -> dict[str, Any]:
        """`admin_config()` with the error and log callbacks, for a client to create."""
        config = self.admin_config()
        _log_config("admin", config)
        return _with_callbacks(config)

    def describe(self) -> dict[str, Any]:
        """The effective base settings with secrets masked, for logs and `--help` dumps."""
        return mask(self.admin_config())


def _log_config(kind: str, config: Mapping[str, Any]) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        shown = " ".join(f"{k}={v}" for k, v in sorted(mask(config).items()))
        logger.debug("librdkafka %s config: %s", kind, shown)


def _with_callbacks(config: dict[str, Any]) -> dict[str, Any]:
    # librdkafka's own log lines would go straight to stderr, several per
    # failure; route them to logging (debug) and report errors once, readably.
    config.setdefault("error_cb", ClientErrors())
    config.setdefault("logger", DebugLog(_librdkafka))
    return config


def effective_config(settings: KafkaSettings, client: str) -> list[str]:
    """`key=value` lines of the librdkafka config of a `client` (producer, consumer,
    admin), secrets masked, after librdkafka accepted it.

    The client is created (which checks every property name and value) and
    closed at once, without waiting for the cluster; a property librdkafka
    refuses is a `ConfigError` with its reason.
    """
    from confluent_kafka import Consumer, Producer

    if client == "producer":
        config = settings.producer_config()
    elif client == "consumer":
        config = settings.consumer_config("GROUP")
    elif client == "admin":
        config = settings.admin_config()
    else:
        raise ConfigError(f"unknown client {client!r} (use producer, consumer or admin)")
    _try_client(Consumer if client == "consumer" else Producer, config)
    return [f"{k}={v}" for k, v in sorted(mask(config).items())]


def check_client_config(settings: KafkaSettings) -> None:
    """Raise `ConfigError` if librdkafka refuses a property (unknown name, bad value).

    Creates and drops a client (a few milliseconds, nothing sent), so a typo in
    `-X` is one line at start rather than a failure deep inside a command.
    """
    from confluent_kafka import Producer

    _try_client(Producer, settings.admin_config())


def _try_client(kind: Any, config: Mapping[str, Any]) -> None:
    from confluent_kafka import KafkaException

    quiet = {**config, "logger": DebugLog(_librdkafka), "error_cb": lambda err: None}
    try:
        client = kind(quiet)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"librdkafka refuses the settings: {_reason(exc)}") from None
    if hasattr(client, "close"):
        client.close()
    else:
        client.flush(0)


def env_bootstrap_servers() -> str | None:
    """`KAFKA_BOOTSTRAP_SERVERS` from the environment, if set and non-empty."""
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    return value or None


def topic_partitions(
    consumer: Any, topic: str, bootstrap: str = "the cluster", timeout: float = 10.0
) -> list[int]:
    """Partition ids of `topic`, raising `TopicNotFound` if the cluster has no such topic.

    Asks in short steps, serving the client's callbacks in between (`poll(0)`:
    call it before assigning or subscribing a consumer), so that a cluster that
    refuses us (authentication, TLS) fails at once, with librdkafka's reason,
    rather than after `timeout` with "transport failure". The reason comes from
    the consumer's `errors` (`trafficmirror.plumbing.clients.Consumer`); a
    consumer without them fails after `timeout` with the last exception's.
    """
    errors: ClientErrors | None = getattr(consumer, "errors", None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = consumer.list_topics(
                topic, timeout=max(0.1, min(1.0, deadline - time.monotonic()))
            )
            break
        except Exception as exc:  # confluent_kafka raises KafkaException on timeouts
            consumer.poll(0)
            if errors is not None and errors.refused:
                raise KafkaUnavailable(
                    f"Kafka at {bootstrap} refused the connection: {errors.refused}"
                ) from None
            if time.monotonic() >= deadline:
                why = (errors.last if errors is not None else None) or _reason(exc)
                raise KafkaUnavailable(
                    f"cannot read metadata for topic {topic!r} from {bootstrap} "
                    f"within {timeout:g}s: {why}"
                ) from None
    if errors is not None:
        errors.connected = True
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise TopicNotFound(f"topic {topic!r} does not exist on {bootstrap}")
    return sorted(info.partitions)


def _reason(exc: BaseException) -> str:
    err: Any = exc.args[0] if exc.args else None
    text = err.str() if hasattr(err, "str") else str(exc)
    return str(text) or type(exc).__name__
