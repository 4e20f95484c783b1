"""`trafficmirror report`: read replay results, aggregate them per endpoint, show them.

`run_report()` is the whole command: it reads `<topic>.results` from the
earliest offset to the high watermarks taken at start (no consumer group, no
commits), decodes each record with `Codec("replay_result")`, folds it into an
`Aggregate` (one result per exchange and run: replays delivered twice count
once), prints a table per endpoint (`replayer.results.terminal`) and, when
asked, writes the HTML report (`replayer.results.html`).

Time filters apply to the send time of each result. They are applied while
reading rather than by seeking with `offsets_for_times`, which not every
Kafka-compatible service answers; the results topic is small next to the
traffic topic.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from replayer.results.aggregate import Aggregate
from replayer.results.html import render_html
from replayer.results.terminal import (  # noqa: F401 (format_table, summary_line: public here too)
    format_table,
    runs_note,
    summary_line,
    transforms_text,
    use_color,
)
from schemas.codec import Codec
from trafficmirror.plumbing.errors import ConfigError, DecodeError, KafkaUnavailable
from trafficmirror.plumbing.kafka import KafkaSettings, results_topic, topic_partitions

logger = logging.getLogger(__name__)

# -- reading ------------------------------------------------------------------------


def _micros(when: dt.datetime | None) -> int | None:
    # A naive datetime is local time, as a user typing --since 2024-05-01T10:00 means it.
    return None if when is None else round(when.timestamp() * 1_000_000)


def read_results(
    settings: KafkaSettings, topic: str, idle_timeout: float = 30.0
) -> Iterator[bytes | None]:
    """Values of every record in `<topic>.results` up to the high watermarks at start.

    Raises `TopicNotFound` if the results topic does not exist, `KafkaUnavailable`
    if the cluster stops answering for `idle_timeout` seconds before the end.
    """
    from confluent_kafka import TopicPartition

    from trafficmirror.plumbing.clients import Consumer

    name = results_topic(topic)
    # No group: nothing is committed, and several reports can read at once.
    consumer = Consumer(settings.consumer_config(group=None))
    try:
        remaining: dict[int, int] = {}
        assignment = []
        for partition in topic_partitions(consumer, name, settings.bootstrap_servers):
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(name, partition), timeout=10
                )
            except Exception as exc:  # KafkaException on timeouts
                raise KafkaUnavailable(f"cannot read the offsets of {name}: {exc}") from exc
            if high > low:
                remaining[partition] = high
                assignment.append(TopicPartition(name, partition, low))
        if not remaining:
            return
        consumer.assign(assignment)
        deadline = time.monotonic() + idle_timeout
        while remaining:
            message = consumer.poll(0.5)
            if message is None:
                _drop_finished(consumer, name, remaining)
                if remaining and time.monotonic() > deadline:
                    raise KafkaUnavailable(
                        f"no records from {name} for {idle_timeout:.0f}s before the end "
                        f"of partitions {sorted(remaining)}"
                    )
                continue
            deadline = time.monotonic() + idle_timeout
            if message.error():
                logger.warning("reading %s: %s", name, message.error())
                continue
            part, offset = message.partition(), message.offset()
            end = remaining.get(part) if part is not None else None
            if part is None or offset is None or end is None or offset >= end:
                continue  # written after we started, or a partition already done
            yield message.value()
            if offset >= end - 1:
                del remaining[part]
                consumer.pause([TopicPartition(name, part)])
    finally:
        consumer.close()


def _drop_finished(consumer: Any, name: str, remaining: dict[int, int]) -> None:
    """Forget partitions whose position reached the end: the last offsets may be
    transaction markers or compacted away, so no record announces the end."""
    from confluent_kafka import TopicPartition

    positions = consumer.position([TopicPartition(name, p) for p in remaining])
    for tp in positions:
        if tp.offset >= 0 and tp.offset >= remaining.get(tp.partition, 0):
            remaining.pop(tp.partition, None)


def collect(
    values: Iterator[bytes | None],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    run_id: str | None = None,
    codec: Codec | None = None,
    aggregate: Aggregate | None = None,
) -> tuple[Aggregate, int]:
    """Decode and aggregate result values; returns the aggregate and how many were undecodable."""
    codec = codec or Codec("replay_result")
    aggregate = aggregate or Aggregate()
    low, high = _micros(since), _micros(until)
    bad = 0
    for value in values:
        if value is None:
            continue  # a tombstone, if someone compacts the results topic
        try:
            result = codec.decode_result(value)
        except DecodeError as exc:
            bad += 1
            if bad <= 3:
                logger.warning("skipping an undecodable result: %s", exc)
            continue
        if run_id is not None and result["run_id"] != run_id:
            continue
        sent = result["sent_us"]
        if (low is not None and sent < low) or (high is not None and sent >= high):
            continue
        aggregate.add(result)
    return aggregate, bad


def run_report(
    settings: KafkaSettings,
    topic: str,
    html_path: str | Path | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    *,
    run_id: str | None = None,
    fail_on_mismatch: bool = False,
    out: TextIO | None = None,
    color: str = "auto",
    gate: Callable[[Aggregate, TextIO], int] | None = None,
) -> int:
    """The `report` command: read, aggregate, print, optionally write HTML.

    Returns the exit code: 0, or 1 with `fail_on_mismatch` when any compared
    request differs (for CI gates; a mirror capture compared vs baseline is
    compared, one with no production response is not). Errors raise `TrafficMirrorError`
    subclasses for the CLI to print (`TopicNotFound` when the topic has no
    results topic). `color` is auto, always or never (`terminal.use_color`).
    `gate` (`results.gate.BudgetCheck`, CI budgets) checks the aggregate last;
    its exit code counts too.
    """
    out = out or sys.stdout
    if since is not None and until is not None and since >= until:
        raise ConfigError("--since must be before --until")
    aggregate, bad = collect(read_results(settings, topic), since=since, until=until, run_id=run_id)
    note = runs_note(aggregate) if run_id is None else None
    if note is not None:
        print(f"note: {note}", file=out)
    if not len(aggregate):
        print(f"no results in {results_topic(topic)} for the given range", file=out)
    else:
        print(format_table(aggregate, color=use_color(color, out)), file=out)
        print("", file=out)
        print(summary_line(aggregate), file=out)
    if bad:
        print(f"{bad} records in {results_topic(topic)} could not be decoded", file=out)
    if html_path is not None:
        window = ", ".join(
            part
            for part in (
                f"since {since.isoformat()}" if since else "",
                f"until {until.isoformat()}" if until else "",
                f"run {run_id}" if run_id else "",
            )
            if part
        )
        page = render_html(
            aggregate,
            title=f"trafficmirror report: {topic}",
            subtitle=f"{results_topic(topic)}{' · ' + window if window else ''}",
            note=note,
        )
        try:
            Path(html_path).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {html_path}: {exc.strerror}") from None
        print(f"HTML report written to {html_path}", file=out)
    code = 1 if fail_on_mismatch and aggregate.total().mismatches else 0
    if gate is not None:
        code = max(code, gate(aggregate, out))
    return code
