"""gRPC end to end through real processes: record (h2c and TLS), replay, compare, report.

A grpcio client calls the test service (`tests.grpcapp`: unary, server
streaming, a failing call, client streaming, bidirectional) through
`trafficmirror record`, over clear text with HTTP/2 prior knowledge and over
TLS with ALPN h2, to a grpcio production server. `trafficmirror replay range`
then replays the recording over h2c to a grpcio shadow: one that changes
`user.name` in every answer (with `--proto-descriptor-set` the report names
that field; without, it names the message that differs) and an identical one
(everything matches).
`trafficmirror report` reads the results back, in the terminal and as HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import Codec
from tests.e2e.test_pipeline import wait_until
from tests.grpcapp import Messages, UsersClient, UsersServer, compile_proto
from tests.replayer.events import watermarks
from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

GET, LIST, FAIL, COLLECT, CHAT = (
    f"/shop.v1.Users/{name}" for name in ("GetUser", "ListUsers", "Fail", "Collect", "Chat")
)
#: The calls made through the recorder: (transport, method, argument).
CALLS = [
    ("h2c", GET, 1),
    ("h2c", GET, 2),
    ("h2c", LIST, 3),
    ("h2c", FAIL, 9),
    ("tls", GET, 3),
    ("tls", LIST, 2),
    ("h2c", COLLECT, 3),
    ("tls", CHAT, 2),
]


@dataclass
class Recorded:
    topic: str
    bootstrap_servers: str
    descriptor_set: Path
    messages: Messages
    tmp: Path

    def replay(self, run_id: str, shadow: UsersServer, *options: str) -> str:
        result = run_cli(
            [
                "replay",
                "range",
                "-b",
                self.bootstrap_servers,
                "-t",
                self.topic,
                "--start-offset",
                "0",
                "--target",
                shadow.url,
                "--run-id",
                run_id,
                "--methods",
                "POST",
                *options,
            ]
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    def report(self, *args: str) -> str:
        result = run_cli(["report", "-b", self.bootstrap_servers, "-t", self.topic, *args])
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    def results(self, run_id: str) -> list[dict[str, Any]]:
        codec = Codec("replay_result")
        consumer = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": "unused"})
        topic = results_topic(self.topic)
        found: list[dict[str, Any]] = []
        try:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            high = watermarks(self.bootstrap_servers, topic, 0)[1]
            seen = 0
            while seen < high:
                msg = consumer.poll(5)
                assert msg is not None, "results topic ended early"
                seen += 1
                result = codec.decode(msg.value())
                if result["run_id"] == run_id:
                    found.append(result)
        finally:
            consumer.close()
        return found


def call(client: UsersClient, m: Messages, method: str, number: int) -> Any:
    if method == GET:
        return client.get_user(m.request(id=number), timeout=30)
    if method == LIST:
        return list(client.list_users(m.list_request(count=number), timeout=30))
    if method == COLLECT:
        return client.collect(iter([m.request(id=n) for n in range(number)]), timeout=30)
    if method == CHAT:
        return list(client.chat(iter([m.request(id=n) for n in range(number)]), timeout=30))
    with pytest.raises(grpc.RpcError) as failed:
        client.fail(m.request(id=number), timeout=30)
    return failed.value.code()


@pytest.fixture(scope="module")
def recorded(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    tmp = tmp_path_factory.mktemp("grpc-e2e")
    descriptor_set = compile_proto(tmp)
    m = Messages.load(descriptor_set)
    topic = kafka.new_topic(1, prefix="e2e-grpc")
    kafka.create_topic(results_topic(topic), 1)
    procs = Procs(tmp)
    try:
        port = free_port()
        confdir = tmp / "mitmproxy"
        with UsersServer(m) as production:
            recorder = procs.start(
                "recorder",
                [
                    "record",
                    "-b",
                    kafka.bootstrap_servers,
                    "-t",
                    topic,
                    "--upstream",
                    production.url,
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--confdir",
                    str(confdir),
                ],
            )
            wait_port(port)
            root = (confdir / "mitmproxy-ca-cert.pem").read_bytes()
            with UsersClient(m, port) as h2c, UsersClient(m, port, root) as tls:
                for transport, method, number in CALLS:
                    call(h2c if transport == "h2c" else tls, m, method, number)
            assert len(production.calls) == len(CALLS)
            wait_until(
                "events in Kafka",
                lambda: watermarks(kafka.bootstrap_servers, topic, 0)[1] >= len(CALLS),
                30,
            )
            assert recorder.stop() == 0, procs.dump()
        yield Recorded(topic, kafka.bootstrap_servers, descriptor_set, m, tmp)
    except BaseException:
        print(procs.dump())
        raise
    finally:
        procs.close()


@pytest.fixture(scope="module")
def replays(recorded: Recorded) -> dict[str, str]:
    """Each run's `replay range` output; the shadows check what they were sent."""
    m = recorded.messages
    out = {}
    with UsersServer(m, changed_field=True, reflection=True) as changed, UsersServer(m) as same:
        out["fields"] = recorded.replay(
            "fields", changed, "--proto-descriptor-set", str(recorded.descriptor_set)
        )
        out["bytes"] = recorded.replay("bytes", changed)
        out["reflection"] = recorded.replay(
            "reflection", changed, "--proto-reflection", changed.url
        )
        out["same"] = recorded.replay(
            "same", same, "--proto-descriptor-set", str(recorded.descriptor_set)
        )
        expected = sorted(method.rsplit("/", 1)[1] for _, method, _ in CALLS)
        assert sorted(changed.calls) == sorted(expected * 3)
        assert sorted(same.calls) == expected
    return out


def differing_paths(report: str) -> list[str]:
    """`ENDPOINT: KIND PATH ×N` of the top differences (without their example values)."""
    _, _, section = report.partition("Most frequent differences (not noise), with example values:")
    found, endpoint = [], ""
    for line in section.splitlines()[1:]:
        if not line.strip():
            break
        if line.startswith("    "):
            found.append(f"{endpoint}: {line.strip().split(': ')[0]}")
        else:
            endpoint = line.strip()
    return found


def test_replay_summaries(replays: dict[str, str], recorded: Recorded) -> None:
    results = f"results to {results_topic(recorded.topic)}: written 8, lost 0"
    # The failing call fails the same way on the shadow: a match; the others changed.
    for run_id in ("fields", "bytes", "reflection"):
        assert (
            "comparison: match 1 (noise only 0), mismatch 7, errors 0, skipped 0; " + results
        ) in replays[run_id]
    assert (
        "comparison: match 8 (noise only 0), mismatch 0, errors 0, skipped 0; " + results
    ) in replays["same"]


FIELD_PATHS = [
    f"{CHAT}: messages messages[*].user.name ×1",
    f"{COLLECT}: messages messages[*].user.name ×1",
    f"{GET}: messages messages[*].user.name ×3",
    f"{LIST}: messages messages[*].user.name ×2",
]


def test_descriptors_by_server_reflection(replays: dict[str, str], recorded: Recorded) -> None:
    out = recorded.report("--run", "reflection")
    assert sorted(differing_paths(out)) == FIELD_PATHS, out


def test_report_names_the_changed_field(replays: dict[str, str], recorded: Recorded) -> None:
    out = recorded.report("--run", "fields")
    assert sorted(differing_paths(out)) == FIELD_PATHS, out
    assert re.search(r"^ *" + re.escape(FAIL) + r" +1 +- ", out, re.M), out
    html = recorded.tmp / "fields.html"
    recorded.report("--run", "fields", "--html", str(html))
    page = html.read_text(encoding="utf-8")
    assert "messages[0].user.name" in page and "/shop.v1.Users/ListUsers" in page

    by_path = {r["path"] + str(r["source"]["offset"]): r for r in recorded.results("fields")}
    assert len(by_path) == len(CALLS)
    unary = next(r for r in by_path.values() if r["path"] == GET)
    assert unary["endpoint"] == GET
    assert [(d["kind"], d["path"], d["noise"]) for d in unary["differences"]] == [
        ("message", "messages[0].user.name", False)
    ]
    number = unary["differences"][0]["production"].strip('"').split("-")[1]
    assert unary["differences"][0]["shadow"] == f'"USER-{number}"'
    stream = next(r for r in by_path.values() if r["path"] == LIST and r["difference_count"] == 3)
    assert [d["path"] for d in stream["differences"]] == [
        f"messages[{n}].user.name" for n in range(3)
    ]


def test_without_descriptors_the_message_differs_by_bytes(
    replays: dict[str, str], recorded: Recorded
) -> None:
    out = recorded.report("--run", "bytes")
    assert sorted(differing_paths(out)) == [
        f"{CHAT}: messages messages[*] ×1",
        f"{COLLECT}: messages messages[*] ×1",
        f"{GET}: messages messages[*] ×3",
        f"{LIST}: messages messages[*] ×2",
    ], out


def test_an_identical_shadow_matches(replays: dict[str, str], recorded: Recorded) -> None:
    out = recorded.report("--run", "same", "--fail-on-mismatch")
    assert "8 results: 8 match (0 only in noise), 0 mismatch" in out
    assert "Most frequent differences" not in out


def test_a_worker_compares_grpc_by_field(
    replays: dict[str, str], recorded: Recorded, procs: Procs
) -> None:
    """The same comparison through `worker` (a consumer group) as through `replay range`."""
    m = recorded.messages
    with UsersServer(m, changed_field=True) as changed:
        worker = procs.start(
            "worker",
            [
                "worker",
                "-b",
                recorded.bootstrap_servers,
                "-t",
                recorded.topic,
                "--group",
                f"g-{recorded.topic}",
                "--start-from",
                "earliest",
                "--target",
                changed.url,
                "--methods",
                "POST",
                "--run-id",
                "worker",
                "--proto-descriptor-set",
                str(recorded.descriptor_set),
            ],
        )
        wait_until(
            "the worker's results", lambda: len(recorded.results("worker")) >= len(CALLS), 90
        )
        assert worker.stop() == 0, worker.stderr
    assert "Traceback" not in worker.stderr
    out = recorded.report("--run", "worker")
    assert sorted(differing_paths(out)) == FIELD_PATHS, out
