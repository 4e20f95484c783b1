"""Where an interrupted range continues, and the command printed for it."""

from __future__ import annotations

import io
import shlex

import pytest

from replayer.consuming.offset_range import clip_spans
from replayer.consuming.offsets import OffsetTracker
from replayer.consuming.range_summary import print_resume, summarize
from replayer.consuming.resume import next_offsets, resume_commands
from replayer.consuming.spans import Span
from replayer.results.summary import Stats
from replayer.stopping import StopSignals


def test_next_offset_is_one_past_the_longest_finished_run() -> None:
    tracker = OffsetTracker()
    spans = [Span(0, 10, 19), Span(1, 0, 4), Span(2, 5, 9)]
    tickets = {o: tracker.start(0, o) for o in range(10, 15)}
    for offset in (10, 11, 13, 14):  # 12 still in flight: 13 and 14 go again
        tracker.finish(tickets[offset])
    for offset in range(5):  # partition 1 done
        tracker.finish(tracker.start(1, offset))
    # partition 2: nothing read yet
    assert next_offsets(spans, tracker) == {0: 12, 2: 5}


def test_the_command_replaces_the_range_options_and_groups_partitions() -> None:
    argv = ["-v", "replay", "range", "-b", "k:9092", "-t", "shop", "-p", "0", "-p1",
            "--partition=2", "--start-offset", "0", "--end-offset=end", "--target",
            "http://s:8080", "--since", "-1h"]  # fmt: skip
    spans = [Span(0, 0, 99), Span(1, 0, 99), Span(2, 0, 50)]
    # "-1h" would be another hour by the time the command runs: the window is written out.
    window = (1_760_000_000_000, None)
    lines, masked = resume_commands(argv, spans, {0: 40, 1: 40, 2: 7}, window)
    assert not masked
    since = ["--since", "2025-10-09T08:53:20.000+00:00"]
    assert [shlex.split(line) for line in lines] == [
        ["trafficmirror", "-v", "replay", "range", "-b", "k:9092", "-t", "shop", "--target",
         "http://s:8080", *since, "-p", "0", "-p", "1", "--start-offset", "40",
         "--end-offset", "99"],
        ["trafficmirror", "-v", "replay", "range", "-b", "k:9092", "-t", "shop", "--target",
         "http://s:8080", *since, "-p", "2", "--start-offset", "7", "--end-offset", "50"],
    ]  # fmt: skip


def test_secrets_in_the_command_are_masked_and_the_rest_kept() -> None:
    argv = ["replay", "range", "--sasl-password", "hunter2", "--sasl-username", "bob",
            "-X", "sasl.password=pw", "-Xssl.key.password=kp", "-X", "linger.ms=5",
            "--set-header", "Authorization: Bearer tok", "--set-header", "X-Env: shadow",
            "--sasl-oauthbearer-client-secret=cs", "--start-offset", "3"]  # fmt: skip
    lines, masked = resume_commands(argv, [Span(0, 3, 9)], {0: 5})
    assert masked
    words = shlex.split(lines[0])
    assert "hunter2" not in lines[0] and "pw" not in words and "tok" not in lines[0]
    assert words[3:5] == ["--sasl-password", "***"]
    assert "bob" in words and "linger.ms=5" in words and "X-Env: shadow" in words
    assert "sasl.password=***" in words and "-Xssl.key.password=***" in words
    assert "Authorization: ***" in words and "--sasl-oauthbearer-client-secret=***" in words
    assert words[-4:] == ["--start-offset", "5", "--end-offset", "9"]


def test_a_window_narrowed_by_offsets() -> None:
    spans = [Span(0, 10, 50), Span(1, 0, 8)]
    assert clip_spans(spans, 20, None) == [Span(0, 20, 50)]
    assert clip_spans(spans, None, 30) == [Span(0, 10, 30), Span(1, 0, 8)]
    assert clip_spans(spans, None, None) == spans


def test_a_stop_asked_for_by_code_prints_where_to_continue_with_its_reason_and_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """How the guard ends a range on a shadow that stays down: `stop.request(reason, 1)`."""
    stop = StopSignals()
    stop.request("the shadow did not answer for 300s", exit_code=1)
    spans = [Span(0, 0, 9)]
    out = io.StringIO()
    code = summarize("shop", "http://s", spans, Stats(), stop, out)
    print_resume(("replay", "range", "--start-offset", "0"), spans, {0: 4}, out)
    assert code == 1
    err = capsys.readouterr().err
    assert "trafficmirror: stopped: the shadow did not answer for 300s; about 10 records" in err
    text = out.getvalue()
    assert "stopped early: continue from 0@4 (partition@next offset)" in text
    assert "  trafficmirror replay range -p 0 --start-offset 4 --end-offset 9" in text
