"""Progress of a replay: the terminal bar, the plain line, lateness and rate figures."""

from __future__ import annotations

import io
import logging
import time

import pytest

from replayer.consuming.offset_range import RangeConfig, run_range
from replayer.models import Response
from replayer.pacing.clock import Pace, Scheduler
from replayer.pacing.progress import Lateness, ProgressBar, RateMeter
from replayer.results.summary import Progress, Stats
from replayer.sending.sender import MockTransport
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka
from trafficmirror.plumbing.kafka import KafkaSettings

BASE_US = 1_770_000_000_000_000


def test_lateness_percentiles_and_text() -> None:
    late = Lateness()
    assert late.text() == ""
    for ms in range(1, 101):
        late.add(ms / 1000)
    assert late.quantile(0.5) == pytest.approx(0.050)
    assert late.quantile(0.99) == pytest.approx(0.099)
    assert late.text() == "late p50 50.0ms p99 99.0ms"
    assert (late.count, late.max) == (100, 0.1)


def test_rate_meter_over_its_window() -> None:
    meter = RateMeter(window=2.0)
    for step in range(41):  # 50 records/s for 10 s, sampled every 0.25 s
        meter.update(round(step * 12.5), now=step * 0.25)
    assert meter.rate == pytest.approx(50.0, rel=0.02)


def test_bar_redraws_one_line_with_rate_lateness_and_eta() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, total=200, interval=0.0)
    late = Lateness()
    late.add(0.0012)
    bar.meter.update(0, now=0.0)
    bar.draw(50, late)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r[######..................] 50/200 25% ")
    assert "late p50 1.2ms p99 1.2ms" in text
    assert text.endswith("\x1b[K\n")


def test_a_log_line_clears_the_bar_first() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bar = ProgressBar(out, total=10, interval=0.0).attach()
        bar.draw(3, None)
        logging.getLogger("trafficmirror.test").warning("something happened")
        bar.draw(4, None)
        bar.close()
        logging.getLogger("trafficmirror.test").warning("after")
    finally:
        root.removeHandler(handler)
    lines = out.getvalue().split("\n")
    assert lines[0].endswith("\r\x1b[Ksomething happened")  # the bar wiped, then the log
    assert lines[1].startswith("\r[") and " 4/10 " in lines[1]
    assert lines[2] == "after"


def paced(topic: str, kafka: Kafka, count: int, gap_ms: int) -> None:
    events = [
        make_event(
            path=f"/{n}",
            request_start_us=BASE_US + n * gap_ms * 1000,
            client=("10.9.0.1", 1000 + n % 3),
        )
        for n in range(count)
    ]
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)


def test_replay_range_draws_the_bar_on_a_terminal(
    kafka: Kafka, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = kafka.new_topic(1)
    paced(topic, kafka, 30, 20)
    out = io.StringIO()
    config = RangeConfig(
        settings=KafkaSettings(kafka.bootstrap_servers),
        topic=topic,
        start_offset=0,
        target="http://shadow.invalid",
        pace=Pace(speed=1.0),
        progress_bar=True,
    )
    code = run_range(config, transport=MockTransport(lambda request: Response(200)), out=out)
    assert code == 0, out.getvalue()
    err = capsys.readouterr().err
    last = err.split("\r")[-1]  # the final redraw, then the newline that ends the bar
    assert last.startswith("[" + "#" * ProgressBar.WIDTH + "] 30/30 100% "), err
    assert "late p50" in last and last.endswith("\x1b[K\n")
    summary = out.getvalue()
    assert "lateness: p50" in summary and "over 30 timed requests" in summary
    # 29 gaps of 20 ms at the recorded pace: about 0.58 s.
    took = float(summary.split(" records in ")[1].split("s")[0])
    assert 0.55 <= took < 1.5


def test_replay_range_logs_a_plain_progress_line_otherwise(
    kafka: Kafka, caplog: pytest.LogCaptureFixture
) -> None:
    topic = kafka.new_topic(1)
    paced(topic, kafka, 40, 25)
    caplog.set_level(logging.INFO)  # at the root: whichever module logs the progress line
    config = RangeConfig(
        settings=KafkaSettings(kafka.bootstrap_servers),
        topic=topic,
        start_offset=0,
        target="http://shadow.invalid",
        pace=Pace(speed=1.0),
        progress_bar=False,
        progress_interval=0.3,
    )
    code = run_range(
        config, transport=MockTransport(lambda request: Response(200)), out=io.StringIO()
    )
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert lines, [r.getMessage() for r in caplog.records]
    assert "/40 (" in lines[0] and "late p50" in lines[0] and "ETA" in lines[0]


def test_replay_range_process_on_a_terminal_shows_the_bar(kafka: Kafka) -> None:
    """Through a real process whose stderr is a pseudo-terminal."""
    import os
    import pty
    import subprocess
    import sys

    from trafficmirror.demo.apps import RecordingShadow

    topic = kafka.new_topic(1)
    paced(topic, kafka, 30, 20)
    master, slave = pty.openpty()
    try:
        with RecordingShadow() as shadow:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "trafficmirror",
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
                ],
                stdout=subprocess.PIPE,
                stderr=slave,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=60,
                check=False,
            )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    # A terminal turns "\n" into "\r\n".
    err = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    assert proc.returncode == 0, err
    last = err.split("\r")[-1]
    assert last.startswith("[" + "#" * ProgressBar.WIDTH + "] 30/30 100% "), err
    assert "lateness: p50" in proc.stdout


# ---------------------------------------------------------------- ETA at a recorded pace


def test_the_schedule_gives_the_time_left_from_recorded_time_and_speed() -> None:
    anchor, start = BASE_US, 1000.0
    end = anchor + 60_000_000  # the range's last exchange: 60 s of recording
    at_speed_1 = Scheduler(Pace(speed=1.0, anchor_us=anchor, start_at=start))
    assert at_speed_1.remaining(end, now=start) == pytest.approx(60.0)
    assert at_speed_1.remaining(end, now=start + 10) == pytest.approx(50.0)
    assert at_speed_1.remaining(end, now=start + 70) == 0.0
    at_speed_2 = Scheduler(Pace(speed=2.0, anchor_us=anchor, start_at=start))
    assert at_speed_2.remaining(end, now=start + 10) == pytest.approx(20.0)
    assert Scheduler(Pace(speed=None)).remaining(end, now=start) is None
    assert Scheduler(Pace(speed=1.0)).remaining(end, now=start) is None  # not started


def test_bar_and_line_take_the_schedules_eta_over_the_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fast burst, then a long recorded silence: the rate says "0:00", the schedule 9:59."""
    out = io.StringIO()
    bar = ProgressBar(out, total=7, interval=0.0)
    bar.meter.update(0, now=time.monotonic() - 1)
    bar.draw(6, None, eta=599.0)
    assert "6/7 85% " in out.getvalue() and out.getvalue().endswith("ETA 9:59\x1b[K")
    bar.draw(6, None)
    assert out.getvalue().endswith("ETA 0:00\x1b[K")  # from the rate: what was wrong

    caplog.set_level(logging.INFO)
    stats = Stats()
    stats.sent = 6
    progress = Progress(stats, interval=0.0, total=7, eta=lambda: 599.0)
    progress.tick(1)
    assert caplog.records[-1].getMessage().endswith(", ETA 599s")


def test_a_real_process_on_a_terminal_counts_down_across_a_recorded_silence(
    kafka: Kafka,
) -> None:
    """Six exchanges 0.2 s apart, then one 9 s later, at --speed 3: after the sixth the
    bar's ETA counts the 8 s of silence left (2.7 s at that speed) down to 0."""
    import os
    import pty
    import re
    import subprocess
    import sys

    topic = kafka.new_topic(1)
    starts_ms = [0, 200, 400, 600, 800, 1000, 9000]
    events = [make_event(path=f"/{n}", request_start_us=BASE_US + ms * 1000)
              for n, ms in enumerate(starts_ms)]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)
    from trafficmirror.demo.apps import RecordingShadow

    master, slave = pty.openpty()
    shadow = RecordingShadow().__enter__()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trafficmirror", "replay", "range", "-b",
             kafka.bootstrap_servers, "-t", topic, "--start-offset", "0",
             "--target", shadow.url, "--speed", "3"],
            stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process ended and the terminal is drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(60) == 0
    finally:
        shadow.__exit__(None, None, None)
        os.close(master)
        if slave >= 0:
            os.close(slave)
    err = b"".join(chunks).decode(errors="replace")
    waiting = [
        int(m[1]) * 60 + int(m[2]) for m in re.finditer(r"\] 6/7 85% .*?ETA (\d+):(\d\d)", err)
    ]
    assert waiting, err
    assert waiting[0] >= 2 and waiting[-1] <= 1, waiting
    assert waiting == sorted(waiting, reverse=True), waiting
