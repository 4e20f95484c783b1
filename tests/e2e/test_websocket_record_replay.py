"""A chat-like WebSocket session recorded through `trafficmirror record`, replayed at `--speed 2`.

Production is `ChatShadow` (an aiohttp WebSocket server answering every
message with JSON); a real `websockets` client chats through the recorder with
0.4 s between its messages. `replay range --speed 2` replays the recording to
a second `ChatShadow` that notes when each message arrives: the gaps between
them must be half the recorded ones, within the pacing lateness the replay
itself measured and printed (plus a tenth of the gap for delivery on a loaded
machine), and the session must match production.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from websockets.sync.client import connect

from tests.recorder.helpers import read_events
from tests.recorder.test_record_process import start_record
from tests.replayer.wsevents import ChatShadow
from tests.support import Kafka, Procs, run_cli

pytestmark = pytest.mark.e2e

LINES = ["hello", "anyone here?", "what's new", "bye"]
GAP = 0.4
SPEED = 2.0
LATENESS = re.compile(r"lateness: p50 [\d.]+ms, p99 [\d.]+ms, max ([\d.]+)ms")


def test_ws_chat_recorded_and_replayed_at_double_speed(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(2, prefix="e2e-wschat")
    with ChatShadow("alice") as production:
        recorder, port = start_record(
            procs, "ws-chat-recorder", kafka.bootstrap_servers, topic, production.url
        )
        with connect(f"ws://127.0.0.1:{port}/chat?room=7") as ws:
            for n, line in enumerate(LINES):
                if n:
                    time.sleep(GAP)
                ws.send(json.dumps({"say": line}))
                answer = json.loads(ws.recv(timeout=10))
                assert answer["said"] == line
        # upgrade + a message and its answer per line + the end
        events = [e for _, e in read_events(kafka.bootstrap_servers, topic, 2 + 2 * len(LINES))]
        assert recorder.stop() == 0, recorder.stderr
    sent = sorted(
        e["request_start_us"]
        for e in events
        if e["kind"] == "websocket_message" and e["websocket"]["from_client"]
    )
    recorded_gaps = [(b - a) / 1e6 for a, b in zip(sent, sent[1:], strict=False)]
    assert len(recorded_gaps) == len(LINES) - 1
    assert all(gap >= GAP for gap in recorded_gaps), recorded_gaps

    with ChatShadow("alice") as shadow:
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
                "--speed",
                str(SPEED),
            ]
        )
        heard = shadow.heard
    assert result.returncode == 0, result.stdout + result.stderr
    assert "comparison: match 1 (noise only 0), mismatch 0, errors 0, skipped 0" in result.stdout
    assert [json.loads(h.data)["say"] for h in heard] == LINES
    assert {h.path for h in heard} == {"/chat?room=7"}
    late = LATENESS.search(result.stdout)
    assert late is not None, result.stdout
    max_late = float(late.group(1)) / 1000
    replayed_gaps = [b.at - a.at for a, b in zip(heard, heard[1:], strict=False)]
    for recorded, replayed in zip(recorded_gaps, replayed_gaps, strict=True):
        expected = recorded / SPEED
        tolerance = max_late + 0.1 * expected
        assert abs(replayed - expected) <= tolerance, (recorded_gaps, replayed_gaps, max_late)
