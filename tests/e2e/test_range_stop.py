"""`replay range` as a real process: an interrupt says where to continue, and the command works.

Exchanges recorded 0.1 s apart are replayed at the recorded pace in a time
window; SIGINT comes part-way. The summary names the next offset of each
partition and prints the command that replays the rest; running that command
(the window, now within those offsets) replays exactly what the first run did
not, so the two runs together replay the window once.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import signal

import pytest

from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Procs, run_cli
from trafficmirror.demo.apps import RecordingShadow

BASE_US = 1_760_000_000_000_000

pytestmark = pytest.mark.e2e


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def test_an_interrupted_window_prints_the_command_that_replays_the_rest(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(2)
    events = [
        make_event(path=f"/{n}", client=("10.0.0.1", 30000 + n % 4),
                   headers=[("Host", "h"), ("X-Tag", str(n))],
                   request_start_us=BASE_US + n * 100_000)
        for n in range(40)
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, spread=2)
    base = BASE_US / 1e6
    window = ["--since", iso(base + 0.5), "--until", iso(base + 3.5)]  # tags 5..34
    with RecordingShadow() as shadow:
        first = procs.start(
            "range",
            ["replay", "range", "-b", kafka.bootstrap_servers, "-t", topic,
             "--target", shadow.url, "--speed", "1", *window],
        )  # fmt: skip
        shadow.wait_for(8, timeout=60)
        first.signal(signal.SIGINT)
        assert first.wait(30) == 130, first.stderr
        before = [int(r.header("X-Tag") or -1) for r in shadow.received]
        out = first.stdout
        match = re.search(r"stopped early: continue from (.+) \(partition@next offset\)", out)
        assert match, out
        left = dict((int(p), int(o)) for p, o in (pair.split("@") for pair in match[1].split(", ")))
        commands = [ln.strip() for ln in out.splitlines() if ln.startswith("  trafficmirror ")]
        assert commands, out
        for line in commands:
            words = shlex.split(line)
            assert words[:3] == ["trafficmirror", "replay", "range"]
            assert "--since" in words and "--start-offset" in words, words
            start = int(words[words.index("--start-offset") + 1])
            partitions = [int(words[i + 1]) for i, w in enumerate(words) if w == "-p"]
            assert all(left[p] == start for p in partitions)
            rest = run_cli(words[1:], timeout=60)
            assert rest.returncode == 0, rest.stderr
        after = [int(r.header("X-Tag") or -1) for r in shadow.received[len(before) :]]
    assert 8 <= len(before) < 30
    assert sorted(before + after) == list(range(5, 35))
