"""Session fixtures: one broker for the run, fresh topics per test, process cleanup.

The broker is librdkafka's mock cluster started in this process, unless
KAFKA_BOOTSTRAP_SERVERS points at a real cluster (topics are then created
through the admin API). Tests that inject faults start their own mock cluster
so they never disturb the shared one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Kafka, Procs
from trafficmirror.plumbing.devbroker import MockCluster
from trafficmirror.plumbing.kafka import env_bootstrap_servers


@pytest.fixture(scope="session")
def kafka() -> Iterator[Kafka]:
    servers = env_bootstrap_servers()
    if servers:
        yield Kafka(servers)
        return
    cluster = MockCluster(brokers=3, default_partitions=4)
    try:
        yield Kafka(cluster.bootstrap_servers, mock=cluster)
    finally:
        cluster.close()


@pytest.fixture
def mock_kafka() -> Iterator[Kafka]:
    """A private mock cluster for fault injection (always the mock)."""
    cluster = MockCluster(brokers=1, default_partitions=2)
    try:
        yield Kafka(cluster.bootstrap_servers, mock=cluster)
    finally:
        cluster.close()


@pytest.fixture
def topic(kafka: Kafka) -> str:
    """A fresh 4-partition traffic topic."""
    return kafka.new_topic(4)


@pytest.fixture
def procs(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Procs]:
    """Start `trafficmirror` processes; they are stopped (and their logs shown on failure)."""
    group = Procs(tmp_path_factory.mktemp("procs"))
    yield group
    group.close()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(group.dump())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
