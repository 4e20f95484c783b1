"""Poison records: to `<topic>.dlq` with their reason and origin; the replay keeps going."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from replayer.models import Record, Response, Target
from replayer.pipeline import Pipeline
from replayer.results.dlq import RETRY_SECONDS, DeadLetters, dead_letter_headers, describe
from replayer.sending.sender import MockTransport, Sender
from schemas.codec import Codec
from tests.replayer.consuming.test_worker import log, metrics, ready, start_worker, wait_until
from tests.replayer.events import connection_key, make_event, watermarks
from tests.support import Kafka, Procs, run_cli
from trafficmirror.demo.apps import RecordingShadow
from trafficmirror.plumbing.kafka import KafkaSettings, dlq_topic

CODEC = Codec()
VALID = 30


def poison() -> list[tuple[str, bytes, bytes | None, str]]:
    """(name, key, value, expected reason) of every kind of poison record."""
    body = CODEC.encode(make_event(path="/fine")).value
    unknown = b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + body[10:]
    return [
        ("garbage", b"p-garbage", b"\xde\xad\xbe\xef not an event", "undecodable"),
        ("truncated", b"p-truncated", body[: len(body) // 2], "undecodable"),
        ("fingerprint", b"p-fingerprint", unknown, "undecodable"),
        ("empty", b"p-empty", None, "undecodable"),
        ("path", b"p-path", CODEC.encode(make_event(path=b"no-slash here")).value, "unsendable"),
        (
            "authority-huge",
            b"p-huge",
            CODEC.encode(make_event(authority="a" * 5000)).value,
            "unsendable",
        ),
        (
            "authority-ctl",
            b"p-ctl",
            CODEC.encode(make_event(authority="shop\r\nX-Evil: 1")).value,
            "unsendable",
        ),
        (
            "header",
            b"p-header",
            CODEC.encode(
                make_event(headers=[("Host", "shop"), ("X-Split", "a\r\nInjected: yes")])
            ).value,
            "unsendable",
        ),
    ]


#: Made once: event ids are unique per make_event() call.
POISON = poison()


def load(kafka: Kafka, topic: str) -> dict[bytes, tuple[int, int]]:
    """VALID events and every poison record, interleaved over 2 partitions.

    Returns poison key → (partition, offset).
    """
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    where: dict[bytes, tuple[int, int]] = {}
    bad = list(POISON)
    for n in range(VALID):
        event = make_event(
            path=f"/ok/{n}",
            headers=[("Host", "shop"), ("X-Seq", str(n))],
            client=("10.3.3.3", 32000 + n % 4),
        )
        encoded = CODEC.encode(event)
        producer.produce(
            topic, encoded.value, connection_key(event), partition=n % 2, headers=encoded.headers
        )
        if n % 3 == 2 and bad:
            _, key, value, _ = bad.pop()
            producer.produce(
                topic,
                value,
                key,
                partition=n % 2,
                headers=[("origin", b"test")],
                on_delivery=lambda err, msg: where.__setitem__(
                    msg.key(), (msg.partition(), msg.offset())
                ),
            )
    assert not bad
    assert producer.flush(30) == 0
    return where


def dead_letters(kafka: Kafka, topic: str) -> list[dict[str, Any]]:
    """`<topic>.dlq` as `trafficmirror inspect` prints it."""
    result = run_cli(["inspect", "-b", kafka.bootstrap_servers, "-t", dlq_topic(topic)], timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def check_dead_letters(kafka: Kafka, topic: str, where: dict[bytes, tuple[int, int]]) -> None:
    lines = dead_letters(kafka, topic)
    expected = {key: (name, value, reason) for name, key, value, reason in POISON}
    assert len(lines) == len(expected)
    for line in lines:
        key = line["kafka"]["key"].encode()
        name, value, reason = expected[key]
        dlq = line["dlq"]
        assert (dlq["reason"], dlq["topic"]) == (reason, topic), (name, dlq)
        assert (dlq["partition"], dlq["offset"]) == where[key], name
        assert dlq["error"] and dlq["replayer"]
        if reason == "unsendable":  # a valid event: inspect prints it
            assert line["id"] == CODEC.decode(value)["id"]
        else:
            assert "error" in line
    # The original value and headers, byte for byte, for kcat-style readers.
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": "tm-dlq-probe",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(dlq_topic(topic), 0, 0)])
        got: dict[bytes, Any] = {}
        while len(got) < len(expected):
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            got[message.key()] = message
    finally:
        consumer.close()
    for key, message in got.items():
        assert message.value() == expected[key][1]
        assert message.headers()[0] == ("origin", b"test")


def test_headers_round_trip_and_replace_earlier_dead_letter_headers() -> None:
    record = Record(
        "shop",
        3,
        17,
        b"k",
        b"v",
        5,
        headers=(
            ("content-type", b"x"),
            ("trafficmirror-dlq-reason", b"old"),
        ),
    )
    headers = dead_letter_headers(record, "unsendable", "bad path " + "x" * 2000, "h/1")
    assert headers[0] == ("content-type", b"x")
    assert [k for k, _ in headers].count("trafficmirror-dlq-reason") == 1
    info = describe(headers)
    assert info is not None
    assert (info["reason"], info["topic"], info["partition"], info["offset"]) == (
        "unsendable",
        "shop",
        3,
        17,
    )
    assert len(info["error"]) == 1000
    assert describe([("content-type", b"x")]) is None


class FakeDlq:
    """Accepts dead letters while `accept` is True; `closed` like a closed sink."""

    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.closed = False
        self.sent: list[tuple[int, str, bool]] = []

    def send(self, record: Record, reason: str, error: str, retry: bool = False) -> bool:
        self.sent.append((record.offset, reason, retry))
        return self.accept


def poisoned_pipeline(dlq: FakeDlq) -> tuple[Pipeline, Sender, list[asyncio.Future[Any]]]:
    sender = Sender(MockTransport(lambda req: Response(200)), concurrency=1)
    pipeline = Pipeline(codec=CODEC, target=Target.parse("http://s:81"), sender=sender, dlq=dlq)  # type: ignore[arg-type]
    bad_path = CODEC.encode(make_event(path=b"nope")).value
    futures = [
        pipeline.handle(Record("t", 0, 0, None, b"junk")),
        pipeline.handle(Record("t", 0, 1, None, bad_path)),
    ]
    return pipeline, sender, futures


def test_a_poison_record_counts_handled_once_its_dead_letter_is_queued() -> None:
    async def main() -> None:
        dlq = FakeDlq(True)
        pipeline, sender, futures = poisoned_pipeline(dlq)
        assert dlq.sent == [(0, "undecodable", False), (1, "unsendable", False)]
        results = [f.result() for f in futures]
        assert [(r.kind, r.detail) for r in results][1] == ("skipped", "unsendable")
        assert pipeline.stats.handled == 2
        await sender.aclose()

    asyncio.run(main())


def test_a_full_dead_letter_queue_is_retried_and_a_closed_one_leaves_it_unhandled() -> None:
    async def main() -> None:
        dlq = FakeDlq(False)
        pipeline, sender, futures = poisoned_pipeline(dlq)
        await asyncio.sleep(RETRY_SECONDS * 2.5)
        assert not any(f.done() for f in futures)
        assert pipeline.stats.handled == 0 and pipeline.waiting_dead_letters == 2
        retries = [retry for _, _, retry in dlq.sent]
        assert retries[:2] == [False, False] and len(retries) >= 4 and all(retries[2:])
        dlq.accept = True  # room again
        await asyncio.wait_for(asyncio.gather(*futures), RETRY_SECONDS * 3)
        assert pipeline.stats.handled == 2 and pipeline.waiting_dead_letters == 0

        dlq.accept = False
        _, _, more = poisoned_pipeline(dlq)
        dlq.closed = True  # the replay stopped: read again by the next owner
        await asyncio.sleep(RETRY_SECONDS * 1.5)
        assert all(f.cancelled() for f in more)
        await sender.aclose()

    asyncio.run(main())


def test_a_dead_letter_keeps_key_value_timestamp_and_says_why(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    kafka.create_topic(dlq_topic(topic), 1)
    sink = DeadLetters(KafkaSettings(kafka.bootstrap_servers), topic, replayer_id="r/1")
    assert sink.send(
        Record(topic, 0, 5, b"key", b"value", 1_700_000_000_123), "undecodable", "corrupt"
    )
    sink.close(10)
    assert sink.line() == f"dead letters to {dlq_topic(topic)}: written 1, failed 0"
    (line,) = dead_letters(kafka, topic)
    assert line["kafka"]["timestamp_ms"] == 1_700_000_000_123
    assert line["dlq"] == {
        "reason": "undecodable",
        "error": "corrupt",
        "topic": topic,
        "partition": 0,
        "offset": 5,
        "replayer": "r/1",
    }


@pytest.mark.e2e
def test_worker_dead_letters_poison_and_replays_the_rest(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(dlq_topic(topic), 1)
    group = f"g-{topic}"
    where = load(kafka, topic)
    with RecordingShadow() as shadow:
        worker, port = start_worker(procs, kafka, topic, group, shadow, "w")
        wait_until("the worker", lambda: ready(port))
        wait_until("the valid records", lambda: len(shadow.received) >= VALID)
        wait_until(
            "the dead letters",
            lambda: (
                re.search(r"^trafficmirror_replayer_dlq_written_total 8\.0$", metrics(port), re.M)
                is not None
            ),
        )
        text = metrics(port)
        assert 'trafficmirror_replayer_skipped_total{reason="unsendable"} 4.0' in text
        assert 'trafficmirror_replayer_skipped_total{reason="undecodable"} 4.0' in text
        assert worker.stop() == 0, log(worker)
        received = shadow.received
    assert sorted(int(r.header("X-Seq") or -1) for r in received) == list(range(VALID))
    stopped = [line for line in log(worker).splitlines() if "worker stopped:" in line]
    assert "skipped-unsendable 4, undecodable 4" in stopped[0]
    # Poison held nothing back: everything is committed, up to the end of each partition.
    committed = stopped[0].split("committed ")[1]
    ends = {p: watermarks(kafka.bootstrap_servers, topic, p)[1] for p in (0, 1)}
    assert committed == f"0@{ends[0]}, 1@{ends[1]}"
    assert f"dead letters to {dlq_topic(topic)}: written 8, failed 0" in log(worker)
    check_dead_letters(kafka, topic, where)


@pytest.mark.e2e
def test_replay_range_dead_letters_poison_and_exits_1(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(dlq_topic(topic), 1)
    where = load(kafka, topic)
    with RecordingShadow() as shadow:
        result = run_cli(
            [
                "replay",
                "range",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
                "--target",
                shadow.url,
                "--start-offset",
                "0",
            ],
            timeout=60,
        )
        received = shadow.received
    assert result.returncode == 1, result.stderr
    assert sorted(int(r.header("X-Seq") or -1) for r in received) == list(range(VALID))
    assert f"total: consumed {VALID + 8}, sent {VALID}" in result.stdout
    assert f"dead letters to {dlq_topic(topic)}: written 8, failed 0" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"trafficmirror: 8 of {VALID + 8} records could not be sent "
        "(errors 0, undecodable 4, unsendable 4)"
    )
    check_dead_letters(kafka, topic, where)
