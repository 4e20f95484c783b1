"""KafkaSettings: one place builds every librdkafka config; secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.kafka import KafkaSettings, mask


def test_x_properties_override_defaults() -> None:
    settings = KafkaSettings.from_options("b:9092", ["linger.ms=5", "compression.type=zstd"])
    config = settings.producer_config()
    assert config["bootstrap.servers"] == "b:9092"
    assert config["linger.ms"] == "5"
    assert config["compression.type"] == "zstd"
    assert config["enable.idempotence"] is True


def test_properties_file_and_x_precedence(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# comment\nbootstrap.servers=file:9092\nsasl.password=hunter2\nlinger.ms=1\n")
    settings = KafkaSettings.from_options(None, ["linger.ms=7"], str(path))
    assert settings.bootstrap_servers == "file:9092"
    assert settings.producer_config()["linger.ms"] == "7"
    assert settings.describe()["sasl.password"] == "***"
    assert "hunter2" not in repr(settings.describe())


def test_bad_inputs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bootstrap"):
        KafkaSettings.from_options(None)
    with pytest.raises(ConfigError, match="key=value"):
        KafkaSettings.from_options("b:1", ["novalue"])
    with pytest.raises(ConfigError, match="cannot read"):
        KafkaSettings.from_options("b:1", [], str(tmp_path / "missing"))


def test_consumer_config_protocols() -> None:
    settings = KafkaSettings("b:1")
    kip848 = settings.consumer_config("g")
    assert kip848["group.protocol"] == "consumer"
    assert kip848["enable.auto.offset.store"] is False
    classic = settings.consumer_config("g", "classic")
    assert classic["group.protocol"] == "classic"
    assert settings.consumer_config(None)["enable.auto.commit"] is False
    with pytest.raises(ConfigError):
        settings.consumer_config("g", "bogus")


def test_mask_hides_every_kind_of_secret() -> None:
    masked = mask(
        {
            "sasl.password": "p",
            "ssl.key.password": "k",
            "sasl.oauthbearer.client.secret": "s",
            "sasl.oauthbearer.config": "c",
            "ssl.key.pem": "pem",
            "sasl.username": "alice",
        }
    )
    assert masked["sasl.username"] == "alice"
    assert {k for k, v in masked.items() if v == "***"} == {
        "sasl.password",
        "ssl.key.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
    }
