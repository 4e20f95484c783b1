"""The run's tally (`Stats`) and its periodic progress line (`Progress`)."""

from __future__ import annotations

import logging

import pytest

from replayer.models import Record, Result
from replayer.results.summary import Progress, Stats


def record(partition: int, offset: int) -> Record:
    return Record("t", partition, offset, b"k", b"v")


def test_stats_count_each_kind_per_partition() -> None:
    stats = Stats()
    kinds = [("sent", None), ("error", "timeout"), ("skipped", "method"), ("undecodable", "x")]
    for offset, (kind, detail) in enumerate(kinds):
        stats.read(record(offset % 2, 10 - offset))
        stats.add(Result(record(offset % 2, 10 - offset), kind, detail))
    assert stats.handled == 4
    assert stats.line() == (
        "consumed 4, sent 1, errors 1, skipped-truncated 0, skipped-method 1, undecodable 1"
    )
    even, odd = stats.partitions[0], stats.partitions[1]
    assert (even.consumed, even.sent, even.skipped, even.first, even.last) == (2, 1, 1, 8, 10)
    assert (odd.errors, odd.undecodable, odd.first, odd.last) == (1, 1, 7, 9)


def test_progress_logs_a_line_per_interval_and_nothing_when_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="replayer.results.summary")
    stats = Stats()
    progress = Progress(stats, interval=0.0, total=10)
    stats.add(Result(record(0, 0), "sent"))
    progress.tick(in_flight=2)
    progress.tick(in_flight=0)  # nothing handled since, nothing in flight: idle
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("progress: handled 1/10 ("), lines
    assert "in flight 2" in lines[0] and "ETA" in lines[0]
