"""Per-client error callbacks: each Kafka client's errors are its own."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.kafka import ClientErrors, KafkaSettings, topic_partitions

SETTINGS = KafkaSettings("127.0.0.1:1")


class FakeError:
    """What librdkafka hands `error_cb`: a code, a text, whether it is fatal."""

    def __init__(self, code: int, text: str, fatal: bool = False) -> None:
        self._code, self._text, self._fatal = code, text, fatal

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return self._fatal


AUTH_FAILED = FakeError(58, "SASL authentication error: Authentication failed")
ALL_DOWN = FakeError(-187, "1/1 brokers are down")
TRANSPORT = FakeError(-195, "127.0.0.1:1/bootstrap: Connect failed")


class FakeConsumer:
    """A consumer that never gets metadata; `poll()` serves the errors it is given."""

    def __init__(self, errors: ClientErrors | None, pending: list[FakeError]) -> None:
        self.errors = errors
        self.pending = pending

    def list_topics(self, topic: str, timeout: float) -> Any:
        raise RuntimeError("Failed to get metadata: Local: Broker transport failure")

    def poll(self, timeout: float) -> None:
        while self.pending and self.errors is not None:
            self.errors(self.pending.pop(0))


def test_every_config_gets_its_own_error_callback() -> None:
    configs = [
        SETTINGS.consumer_config(None),
        SETTINGS.consumer_config("group"),
        SETTINGS.admin_client_config(),
    ]
    callbacks = [config["error_cb"] for config in configs]
    assert all(isinstance(cb, ClientErrors) for cb in callbacks)
    assert len({id(cb) for cb in callbacks}) == 3
    # An error callback the caller passes in wins.
    mine = ClientErrors()
    assert SETTINGS.consumer_config(None, error_cb=mine)["error_cb"] is mine


def test_the_consumer_keeps_the_errors_of_its_config() -> None:
    config = SETTINGS.consumer_config(None)
    consumer = Consumer(config)
    try:
        assert consumer.errors is config["error_cb"]
    finally:
        consumer.close()


def test_refused_and_last_come_from_the_errors_reported() -> None:
    errors = ClientErrors()
    errors(ALL_DOWN)
    assert (errors.refused, errors.last) == (None, None)  # "all down" says nothing new
    errors(TRANSPORT)
    assert (errors.refused, errors.last) == (None, TRANSPORT.str())
    errors(AUTH_FAILED)
    assert errors.refused == errors.last == AUTH_FAILED.str()


def test_a_refused_client_fails_at_once_and_another_client_is_not_affected() -> None:
    refused = FakeConsumer(ClientErrors(), [AUTH_FAILED])
    with pytest.raises(KafkaUnavailable, match="refused the connection: SASL authentication"):
        topic_partitions(refused, "traffic", "b:1", timeout=30)
    # Another client of the same process only reports its own, after its timeout.
    other = FakeConsumer(ClientErrors(), [TRANSPORT])
    with pytest.raises(KafkaUnavailable, match="within 0.2s: 127.0.0.1:1/bootstrap: Connect"):
        topic_partitions(other, "traffic", "b:1", timeout=0.2)
    # A consumer without its own errors gives the exception's reason.
    plain = FakeConsumer(None, [])
    with pytest.raises(KafkaUnavailable, match="within 0.2s: Failed to get metadata"):
        topic_partitions(plain, "traffic", "b:1", timeout=0.2)


def test_errors_are_warnings_once_connected_and_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = ClientErrors()
    with caplog.at_level(logging.DEBUG, "trafficmirror.plumbing.kafka"):
        errors(TRANSPORT)  # before the cluster answered: kept for the caller, debug only
        errors.connected = True
        errors(TRANSPORT)
        errors(TRANSPORT)  # the same kind again within the interval: not logged
        errors(ALL_DOWN)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"Kafka: {TRANSPORT.str()}", f"Kafka: {ALL_DOWN.str()}"]
    assert [r.levelno for r in caplog.records].count(logging.DEBUG) == 1
