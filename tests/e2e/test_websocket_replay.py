"""WebSocket sessions replayed through real processes: `replay range` to a real WebSocket shadow.

The sessions are written to the broker as the recorder writes them (upgrade,
messages, end; `tests.replayer.wsevents`), with an event of a kind this
version does not know and the messages of a connection whose upgrade is not in
the topic. `trafficmirror replay range` replays them to `ChatShadow`, an
aiohttp WebSocket server answering every client message: once answering as
production did (every session matches), once with another user name in one
JSON field (the report, `trafficmirror report`, names `messages[N].user.name`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.e2e.test_pipeline import wait_until
from tests.e2e.test_transforms import results
from tests.replayer.events import make_event, produce_events
from tests.replayer.wsevents import ChatShadow, chat, ws_session
from tests.support import Kafka, Procs, run_cli
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

LINES = ["hello", "how are you", "bye"]


@dataclass
class Replayed:
    topic: str
    servers: str
    outputs: dict[str, str]  # run id -> replay range's stdout
    heard: dict[str, int]  # run id -> client messages the shadow received

    def report(self, *args: str) -> str:
        result = run_cli(["report", "-b", self.servers, "-t", self.topic, *args])
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def replayed(kafka: Kafka) -> Iterator[Replayed]:
    topic = kafka.new_topic(2, prefix="e2e-wsplay")
    kafka.create_topic(results_topic(topic), 2)
    events = [
        *ws_session(chat(LINES), start_us=1_770_000_000_000_000),
        *ws_session(chat(LINES[:2]), start_us=1_770_000_000_200_000, path="/chat?room=2"),
    ]
    unknown = make_event(request_start_us=1_770_000_000_300_000, path="/stream")
    unknown["kind"] = "grpc_stream_message"  # a kind of a later version
    orphan = ws_session(chat(["lost"]), start_us=1_770_000_000_400_000)[1:]  # no upgrade
    produce_events(kafka.bootstrap_servers, topic, [*events, unknown, *orphan], partition=0)
    outputs: dict[str, str] = {}
    heard: dict[str, int] = {}
    for run_id, name in (("same", "alice"), ("changed", "bob")):
        with ChatShadow(name) as shadow:
            result = run_cli(
                [
                    "replay",
                    "range",
                    "-b",
                    kafka.bootstrap_servers,
                    "-t",
                    topic,
                    "--start-offset",
                    "0",
                    "--target",
                    shadow.url,
                    "--run-id",
                    run_id,
                ]
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert "Traceback" not in result.stderr
            outputs[run_id] = result.stdout
            heard[run_id] = len(shadow.heard)
    yield Replayed(topic, kafka.bootstrap_servers, outputs, heard)


def test_every_client_message_reaches_the_shadow(replayed: Replayed) -> None:
    assert replayed.heard == {"same": 5, "changed": 5}
    for out in replayed.outputs.values():
        assert "websocket messages: client 5 sent, server 5 expected, ends 2" in out


def test_identical_sessions_match(replayed: Replayed) -> None:
    out = replayed.outputs["same"]
    assert "comparison: match 2 (noise only 0), mismatch 0, errors 0, skipped 2" in out, out
    report = replayed.report("--run", "same")
    assert "WS /chat" in report


def test_a_changed_field_is_named(replayed: Replayed, tmp_path: Path) -> None:
    out = replayed.outputs["changed"]
    assert "comparison: match 0 (noise only 0), mismatch 2, errors 0, skipped 2" in out, out
    html = tmp_path / "report.html"
    report = replayed.report("--run", "changed", "--html", str(html))
    page = html.read_text(encoding="utf-8")
    assert "WS /chat" in page and "messages[1].user.name" in page
    assert "WS /chat" in report
    assert 'JSON messages[*].user.name ×2: "alice" → "bob"' in report, report


def test_unknown_kinds_and_orphans_are_skipped_and_counted(replayed: Replayed) -> None:
    for out in replayed.outputs.values():
        assert "skipped-unknown-kind 1" in out, out
        assert "skipped-websocket-no-upgrade 3" in out, out


def test_results_are_one_per_session(replayed: Replayed, kafka: Kafka) -> None:
    changed = [r for r in results(kafka, replayed.topic) if r["run_id"] == "changed"]
    sessions = sorted(
        (r for r in changed if r["endpoint"] == "WS /chat" and r["outcome"] == "mismatch"),
        key=lambda r: r["recorded_us"],
    )
    assert [r["shadow_status"] for r in sessions] == [101, 101]
    paths = [[d["path"] for d in r["differences"] if not d["noise"]] for r in sessions]
    assert paths == [
        ["messages[1].user.name", "messages[3].user.name", "messages[5].user.name"],
        ["messages[1].user.name", "messages[3].user.name"],
    ]
    skipped = {r["error"].split(":")[0] for r in changed if r["outcome"] == "skipped"}
    assert skipped == {"unknown-kind", "websocket-no-upgrade"}


def committed_offset(kafka: Kafka, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    try:
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return int(committed.offset)


def test_ws_worker_commits_past_a_session_only_once_it_is_compared(
    kafka: Kafka, procs: Procs
) -> None:
    """A worker replays a whole session (result written, offsets committed past it) and
    stops in the middle of the next one: the group's offset stays at that one's upgrade."""
    topic = kafka.new_topic(1, prefix="e2e-wsworker")
    kafka.create_topic(results_topic(topic), 2)
    done = ws_session(chat(LINES), start_us=1_770_000_100_000_000)
    open_ = ws_session(chat(LINES[:1]), start_us=1_770_000_101_000_000, with_end=False)
    produce_events(kafka.bootstrap_servers, topic, [*done, *open_], partition=0)
    group = f"g-{topic}"
    with ChatShadow("alice") as shadow:
        worker = procs.start(
            "ws-worker",
            ["worker", "-b", kafka.bootstrap_servers, "-t", topic, "--group", group,
             "--start-from", "earliest", "--target", shadow.url],
        )  # fmt: skip
        wait_until("both sessions' messages at the shadow", lambda: len(shadow.heard) >= 4, 30)
        wait_until(
            "the first session committed",
            lambda: committed_offset(kafka, topic, group) == len(done),
            30,
        )
        time.sleep(1)  # the open session's records are handled too: the offset must stay
        assert worker.stop() == 0, worker.stderr
    # The open session's upgrade: the next owner replays it whole.
    assert committed_offset(kafka, topic, group) == len(done)
    [result] = results(kafka, topic)
    assert (result["id"], result["endpoint"], result["outcome"]) == (
        done[0]["id"],
        "WS /chat",
        "match",
    )
