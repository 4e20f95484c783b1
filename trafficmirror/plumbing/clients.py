"""A Kafka consumer that keeps its own error callback.

librdkafka reports why it cannot talk to the cluster (authentication refused,
TLS handshake failed, all brokers down) to the `error_cb` of the client's
config, not to the call that is waiting for an answer. Each config from
`KafkaSettings.consumer_config()` carries its own `ClientErrors` as that
callback; this `Consumer` keeps it as `errors`, so `topic_partitions()` can
say why *this* client got no metadata. A plain `confluent_kafka.Consumer`
works too, but fails a refused connection only after the timeout.

Kept apart from `trafficmirror.plumbing.kafka` so that building settings never
loads confluent_kafka (the CLI's `--help` stays fast).
"""

from __future__ import annotations

from typing import Any

import confluent_kafka

from trafficmirror.plumbing.kafka import ClientErrors


class Consumer(confluent_kafka.Consumer):
    """A `confluent_kafka.Consumer` whose config's `ClientErrors` is `errors` (None if other)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        callback = config.get("error_cb")
        self.errors = callback if isinstance(callback, ClientErrors) else None
