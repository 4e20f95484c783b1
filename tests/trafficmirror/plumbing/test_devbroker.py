"""The in-memory broker: a real Kafka protocol endpoint, started for real."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from trafficmirror.plumbing.devbroker import MockCluster, parse_topic_spec
from trafficmirror.plumbing.errors import ConfigError


def test_mock_cluster_round_trip() -> None:
    with MockCluster(brokers=1) as cluster:
        cluster.create_topic("t", 3)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
        for i in range(30):
            producer.produce("t", key=str(i), value=b"v%d" % i)
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "x"})
        metadata = consumer.list_topics("t", timeout=10)
        assert sorted(metadata.topics["t"].partitions) == [0, 1, 2]
        total = sum(
            consumer.get_watermark_offsets(TopicPartition("t", p), timeout=10)[1] for p in range(3)
        )
        consumer.close()
        assert total == 30


def test_parse_topic_spec() -> None:
    assert parse_topic_spec("a", 4) == ("a", 4)
    assert parse_topic_spec("a:7", 4) == ("a", 7)
    for bad in (":3", "a:x", "a:0"):
        with pytest.raises(ConfigError):
            parse_topic_spec(bad, 4)


def test_dev_kafka_command_prints_bootstrap_first_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trafficmirror", "dev-kafka", "--topic", "orders:2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("bootstrap.servers=127.0.0.1:")
        servers = first.split("=", 1)[1]
        consumer = Consumer({"bootstrap.servers": servers, "group.id": "x"})
        metadata = consumer.list_topics("orders", timeout=10)
        assert sorted(metadata.topics["orders"].partitions) == [0, 1]
        consumer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "in-memory" in err


def test_dev_kafka_partitions_apply_to_named_topics_and_help_says_what_auto_creation_gets() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trafficmirror", "dev-kafka", "--partitions", "2", "--brokers",
         "1", "--topic", "named", "--topic", "sized:3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        servers = proc.stdout.readline().strip().split("=", 1)[1]
        producer = Producer({"bootstrap.servers": servers})
        producer.produce("auto", value=b"x")  # auto-created by the mock
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": servers, "group.id": "x"})
        counts = {
            name: len(consumer.list_topics(name, timeout=10).topics[name].partitions)
            for name in ("named", "sized", "auto")
        }
        consumer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert counts == {"named": 2, "sized": 3, "auto": 4}
    shown = subprocess.run(
        [sys.executable, "-m", "trafficmirror", "dev-kafka", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    help_text = " ".join(shown.split())
    assert "auto-created ones" not in help_text
    assert "A topic a client creates by using it gets the mock's own 4" in help_text


def test_dev_kafka_bad_topic_is_one_line_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trafficmirror", "dev-kafka", "--topic", "x:zero"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "partitions must be a whole number" in result.stderr
