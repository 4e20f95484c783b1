"""A selection that keeps nothing says so, through real `replay range` and `worker` processes.

`--filter 'method == GET'` is valid mitmproxy syntax (three bare words, each
matched against the URL) that matches nothing: the range exits 3 with one
warning naming the filter, the count and the syntax; writes left out by the
default `--methods` say how to send them. A worker logs the same warning.
"""

from __future__ import annotations

import io
import time

import pytest

from replayer.consuming.offset_range import RangeConfig, run_range
from replayer.models import Response
from replayer.pacing.clock import Pace
from replayer.sending.sender import MockTransport
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Procs, run_cli
from trafficmirror.plumbing.kafka import KafkaSettings

pytestmark = pytest.mark.e2e


def replay(kafka: Kafka, topic: str, *args: str) -> tuple[int, list[str], str]:
    result = run_cli(
        ["replay", "range", "-b", kafka.bootstrap_servers, "-t", topic,
         "--target", "http://127.0.0.1:9", "--speed", "max", "--start-offset", "0", *args],
        timeout=60,
    )  # fmt: skip
    warnings = [ln for ln in result.stderr.splitlines() if "warning" in ln]
    return result.returncode, warnings, result.stdout


def test_a_range_whose_selection_keeps_nothing_warns_and_exits_3(
    kafka: Kafka, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = kafka.new_topic(1)
    gets = [make_event(path=f"/items/{n}") for n in range(4)]
    posts = [make_event(method="POST", path="/items", body=b"{}") for _ in range(2)]
    produce_events(kafka.bootstrap_servers, topic, gets + posts)

    code, warnings, out = replay(kafka, topic, "--filter", "method == GET", "--methods", "ALL")
    assert code == 3, (warnings, out)
    assert warnings == [
        "trafficmirror: warning: the selection kept none of the 6 records read: dropped 6 by "
        "--filter 'method == GET' (it uses no ~ operator, so each word must match the URL; "
        "mitmproxy filters look like '~m GET & ~u /api & !~c 500')"
    ]
    assert "sent 0" in out

    # In-process (the same code, without another process start): the two POSTs.
    config = RangeConfig(
        settings=KafkaSettings(kafka.bootstrap_servers),
        topic=topic,
        start_offset=4,
        target="http://shadow.invalid",
        pace=Pace(speed=None),
    )
    out_text = io.StringIO()
    code = run_range(config, transport=MockTransport(lambda request: Response(200)), out=out_text)
    assert code == 3
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warned) == 1
    assert "dropped 2 by --methods (only GET, HEAD, OPTIONS; --methods ALL sends" in warned[0]


def test_a_worker_whose_selection_keeps_nothing_warns(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, [make_event(path=f"/{n}") for n in range(60)])
    worker = procs.start(
        "worker",
        ["worker", "-b", kafka.bootstrap_servers, "-t", topic, "--group", "g",
         "--target", "http://127.0.0.1:9", "--start-from", "earliest", "--filter", "~u /nope"],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "kept none" not in worker.stderr:
        assert time.monotonic() < deadline, worker.stderr
        time.sleep(0.1)
    assert worker.stop() == 0
    line = next(ln for ln in worker.stderr.splitlines() if "kept none" in ln)
    assert "WARNING" in line and "by --filter '~u /nope' (it matched none of them; " in line
