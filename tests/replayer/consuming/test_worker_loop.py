"""The worker's loop against a fake consumer: replay, revoke with a commit, stop with a commit."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from replayer.assembly import Outputs
from replayer.consuming import member as member_module
from replayer.consuming.worker import Worker, WorkerConfig
from replayer.models import Response
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.selecting.selector import SelectOptions
from replayer.sending.sender import MockTransport, OutgoingRequest
from replayer.stopping import StopSignals
from schemas.codec import Codec
from tests.replayer.consuming.fakeconsumer import TOPIC, FakeConsumer, FakeMessage, eof
from tests.replayer.events import make_event
from trafficmirror.plumbing.kafka import KafkaSettings


class NoSessions:
    """Stands for `SessionFollower`: no replay session, no `<topic>.control` to read."""

    def __init__(self, *args: Any) -> None:
        pass

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        return None

    def take_seek(self) -> None:
        return None

    def close(self) -> None:
        pass


class NoDeadLetters:
    """Stands for `DeadLetters`; the test's records are all valid, so nothing is sent here."""

    closed = False

    def send(self, *args: Any, **kwargs: Any) -> bool:
        raise AssertionError("a valid record went to the DLQ")

    def close(self, timeout: float = 10.0) -> None:
        self.closed = True

    def line(self) -> str:
        return "dlq: nothing"


def messages(partition: int, count: int) -> list[FakeMessage]:
    codec = Codec()
    out = []
    for offset in range(count):
        event = make_event(path=f"/p{partition}/{offset}", request_start_us=None)
        value = codec.encode(event).value
        out.append(FakeMessage(partition, offset, value=value, timestamp_ms=1_000 + offset))
    return out


def test_the_loop_replays_commits_what_it_gives_up_and_what_it_finished_at_the_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(member_module, "SessionFollower", NoSessions)
    consumer = FakeConsumer()
    stop = StopSignals(threading.Event())
    seen: list[str] = []

    def handler(request: OutgoingRequest) -> Response:
        seen.append(request.path)
        if len(seen) == 6:
            consumer.rebalance("revoke", [1])  # runs in the next poll
            consumer.deliver(*messages(0, 8)[4:], eof(0, 8))
        if len(seen) == 10:
            stop.request()
        return Response(200)

    config = WorkerConfig(
        settings=KafkaSettings("127.0.0.1:9"),
        topic=TOPIC,
        group="g",
        target="http://shadow.invalid",
        selection=SelectOptions(methods=None),
        comparison=ComparisonOptions(write_results=False),
        drain_timeout=5,
        start_from=None,  # the fake consumer has no committed offsets to ask for
    )
    worker = Worker(config, transport=MockTransport(handler))
    worker.total_partitions = 2
    comparison = Comparison(config.comparison, topic=TOPIC, target=worker.assembly.target)
    outputs = Outputs(comparison, NoDeadLetters())  # type: ignore[arg-type]
    consumer.rebalance("assign", [0, 1])
    consumer.deliver(*messages(0, 4), *messages(1, 2), eof(0, 4), eof(1, 2))
    caplog.set_level(logging.INFO, logger="replayer.consuming")

    stats = asyncio.run(worker._main(consumer, stop, outputs))

    assert (stats.consumed, stats.sent) == (10, 10)
    assert sorted(seen) == sorted([f"/p0/{n}" for n in range(8)] + ["/p1/0", "/p1/1"])
    # Partition 1 was committed when it was revoked, partition 0 at the stop.
    assert consumer.committed == {0: 8, 1: 2}
    assert consumer.threads == {"trafficmirror-consumer_0"} and consumer.closed
    lines = [r.getMessage() for r in caplog.records]
    assert "assigned partitions [0, 1] (now holding [0, 1])" in lines
    assert "revoked partitions [1] (now holding [0])" in lines
    assert any(line.startswith("draining ") for line in lines), lines
    assert any(line.endswith("committed 0@8, 1@2") for line in lines), lines
    assert not worker.book.assigned
