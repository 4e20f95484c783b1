"""`trafficmirror replay range`: replay exactly offsets A..B (or a time window), then exit.

No consumer group: the partitions are assigned with explicit start offsets,
nothing is committed, and re-running the command replays the same records.
The range is checked against each partition's watermarks before anything is
sent (`spans`; a time window gives its spans through `window`); `end` means
the last offset present at start, so the command always finishes. Records go
through the same parts as the group worker's (`replayer.assembly`), merged into
recorded-time order first (`merge`): at the default, recorded pace the first
exchange of the range anchors the virtual clock and partitions interleave as
recorded. Progress: a redrawn bar on a terminal's stderr, else a log line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from confluent_kafka import KafkaException, TopicPartition

from replayer.assembly import Assembly, Outputs, ReplayConfig, Senders
from replayer.consuming.merge import MERGE_LIMIT_BYTES, PartitionMerger
from replayer.consuming.offsets import OffsetTracker, Ticket
from replayer.consuming.range_summary import print_resume, summarize
from replayer.consuming.resume import next_offsets
from replayer.consuming.spans import Span, SpanReader, resolve_spans
from replayer.consuming.timeindex import record_times
from replayer.consuming.window import window_spans
from replayer.eventloop import loop_factory
from replayer.eventloop import run as run_loop
from replayer.models import Record, Result
from replayer.pacing.progress import ProgressBar
from replayer.results.summary import Progress, Stats
from replayer.sending.sender import Transport
from replayer.stopping import StopSignals
from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.runtime import settle_memory

logger = logging.getLogger(__name__)

#: Seconds in-flight requests may still take after an interrupt.
INTERRUPT_GRACE = 5.0
_BATCH = 500
#: Records the merge may hold while a partition has not delivered yet; beyond
#: it the oldest goes out anyway (see `replayer.consuming.merge`). On top of the
#: in-flight bound: what the merge holds waits for more reading, not for sending.
MERGE_LIMIT = 4 * _BATCH
_POLL_SECONDS = 0.05


@dataclass(frozen=True, kw_only=True)
class RangeConfig(ReplayConfig):
    """`trafficmirror replay range`'s options: the replay's, and which records.

    `partitions` empty = all; `start_offset` None = each partition's first
    offset; `end_offset` None = the last offset of each partition at start
    (both inclusive). With a time window in `selection` the spans come from
    it, narrowed by the offsets when they are given (`clip_spans`). `pace`
    defaults to the recorded pace.
    `progress_bar`: draw a bar on stderr (default: when stderr is a terminal).
    `command`: the words it was run with (after the program name), for the
    command that continues it when it is interrupted (`resume`).
    """

    partitions: tuple[int, ...] = ()
    start_offset: int | None = None
    end_offset: int | None = None
    progress_bar: bool | None = None
    command: tuple[str, ...] = ()


def run_range(
    config: RangeConfig,
    *,
    transport: Transport | None = None,
    stop_event: threading.Event | None = None,
    out: IO[str] | None = None,
) -> int:
    """Replay the range (or time window) of `config` to its target; return the exit code.

    0 when every record in the range was sent or deliberately skipped (a
    truncated body, a record selection dropped: both count as handled), 1 when
    some could not be sent or decoded (those go to `<topic>.dlq`) or were
    recorded from the target's own host (`replayer.selecting.safety`), 3 when
    the selection kept none of the records (a warning says why; only the time
    window dropping them all is 0, like an empty window), 130 when
    interrupted. Bad input raises a usage error (`UsageError`, `TopicNotFound`,
    `OffsetOutOfRange`; exit 2 in the CLI) before anything is sent.

    Every replay is compared with the recorded response and its result written
    to `<topic>.results`. Prints a summary to `out` (stdout). While the shadow's
    error-rate guard backs off, nothing is read; the range finishes once the
    shadow answers again, or on SIGINT. `transport` replaces the HTTP client
    (tests); `stop_event` stops it from another thread like SIGTERM does.
    """
    out = out or sys.stdout
    loop_factory()  # a bad TRAFFICMIRROR_EVENT_LOOP is a usage error before anything starts
    assembly = Assembly(config)
    select = config.selection
    topic, settings = config.topic, config.settings
    eof: dict[str, Any] = {"enable.partition.eof": True}
    consumer = Consumer(settings.consumer_config(None, **eof))
    try:
        if select.windowed:
            spans, notes = window_spans(
                settings, topic, config.partitions, select.since_ms, select.until_ms
            )
            spans = clip_spans(spans, config.start_offset, config.end_offset)
        else:
            spans, notes = resolve_spans(
                consumer,
                topic,
                config.partitions,
                config.start_offset,
                config.end_offset,
                settings.bootstrap_servers,
            )
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        if not spans:
            where = "time window" if select.windowed else "range"
            print(f"nothing to replay: no records in the {where} of topic {topic!r}", file=out)
            return 0
        outputs = assembly.open_outputs()
        bar = sys.stderr.isatty() if config.progress_bar is None else config.progress_bar
        try:
            with StopSignals(stop_event, "letting in-flight requests finish") as stop:
                settle_memory()
                tracker = OffsetTracker()
                replay = _replay(consumer, assembly, outputs, spans, transport, stop, bar, tracker)
                stats = run_loop(replay)
        finally:
            outputs.comparison.close()  # flushes the results before the summary counts them
            outputs.dlq.close()
    finally:
        consumer.close()
    code = summarize(
        topic,
        assembly.destination,
        spans,
        stats,
        stop,
        out,
        outputs.comparison,
        outputs.dlq,
        select,
    )
    if stop.is_set():
        window = (select.since_ms, select.until_ms)
        print_resume(config.command, spans, next_offsets(spans, tracker), out, window)
    return code


def clip_spans(spans: list[Span], start: int | None, end: int | None) -> list[Span]:
    """A time window's spans narrowed to offsets `start..end` (a resumed window)."""
    clipped = []
    for span in spans:
        first = span.first if start is None else max(span.first, start)
        last = span.last if end is None else min(span.last, end)
        if first <= last:
            clipped.append(Span(span.partition, first, last))
    return clipped


async def _replay(
    consumer: Any,
    assembly: Assembly,
    outputs: Outputs,
    spans: list[Span],
    transport: Transport | None,
    stop: StopSignals,
    bar: bool,
    tracker: OffsetTracker,
) -> Stats:
    loop = asyncio.get_running_loop()
    config = assembly.config
    topic = config.topic
    sender, pipeline = assembly.start(outputs, transport)
    # --give-up-after: a shadow that stays down ends the range, saying where to continue.
    waited = config.guardrails.give_up_after
    sender.on_give_up(
        lambda: stop.request(
            f"the shadow did not answer for {waited:g}s (--give-up-after)", exit_code=1
        )
    )
    scheduler = assembly.scheduler
    stats = pipeline.stats
    total = sum(s.count for s in spans)
    eta = None
    if config.pace.timed:  # the ETA follows the schedule: the recorded time left
        end_us = await loop.run_in_executor(None, _end_us, config, spans)
        if end_us is not None:
            eta = functools.partial(scheduler.remaining, end_us)
    progress = Progress(stats, config.progress_interval, total=total, eta=eta)
    drawing = ProgressBar(sys.stderr, total).attach() if bar else None

    def tick() -> None:
        if drawing is not None:
            drawing.draw(stats.handled, stats.lateness, eta=eta() if eta is not None else None)
        else:
            progress.tick(pipeline.in_flight + merger.held)

    tickets: dict[tuple[int, int], Ticket] = {}

    def handle(record: Record) -> None:
        """Send `record`; once it is handled for good, its offset counts as done."""
        ticket = tickets.pop((record.partition, record.offset))

        def done(future: asyncio.Future[Result]) -> None:
            if not future.cancelled():  # cancelled: not handled, to be replayed
                tracker.finish(ticket)

        pipeline.handle(record).add_done_callback(done)

    reader = SpanReader(spans)
    # At the bound no more records are taken. Without a group nothing needs serving
    # meanwhile, so partitions are not paused for it (a resume costs about a second
    # before fetching restarts, which would starve a fast shadow).
    high = assembly.max_in_flight
    merger: PartitionMerger[Record] = PartitionMerger(
        limit=MERGE_LIMIT, limit_bytes=MERGE_LIMIT_BYTES
    )
    merger.track(reader.spans)
    # One thread owns the consumer: every call on it runs there, in order.
    executor = ThreadPoolExecutor(1, thread_name_prefix="trafficmirror-range")
    closed: set[int] = set()
    try:
        await loop.run_in_executor(executor, consumer.assign, reader.assignment(topic))
        while not reader.done and not stop.is_set():
            if sender.holding:  # the guard backs off from the shadow: read nothing new
                await sender.wait_sending(0.1)
                tick()
                continue
            # The merge's records are bounded on their own (MERGE_LIMIT): they
            # wait for more reading, so they must not stop it.
            budget = min(_BATCH, high - pipeline.in_flight)
            if budget <= 0:
                await pipeline.wait_for_room(high, 0.1)
                for record in merger.ready(high - pipeline.in_flight):
                    handle(record)
                tick()
                continue
            # A finished span stops fetching, so the consumer holds nothing it won't use.
            newly_closed = sorted(set(reader.spans) - reader.open - closed)
            closed.update(newly_closed)
            messages = await loop.run_in_executor(
                executor, _poll, consumer, topic, newly_closed, budget
            )
            for message in messages:
                error = message.error()
                if error is not None:
                    if reader.is_eof(error):
                        reader.end_of_partition(message.partition(), message.offset())
                    elif error.fatal():
                        raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}")
                    else:
                        logger.warning("Kafka: %s", error.str())
                    continue
                if reader.admit(message.partition(), message.offset()):
                    record = Record.from_message(message)
                    tickets[(record.partition, record.offset)] = tracker.start(
                        record.partition, record.offset
                    )
                    merger.add(record.partition, record.timestamp_ms or 0, record, record.size)
            for partition in set(reader.spans) - reader.open:
                merger.end(partition)
            for record in merger.ready(high - pipeline.in_flight):
                handle(record)
            tick()
        while merger.held and not stop.is_set():
            for record in merger.flush(high - pipeline.in_flight):
                handle(record)
            if merger.held:
                await pipeline.wait_for_room(high, 0.1)
                tick()
        # Everything is read; wait for the requests, unless interrupted: then drop
        # what is not due yet, give what is on the wire a short grace, leave the rest.
        while not stop.is_set() and not await pipeline.wait_for_room(1, 0.2):
            tick()
        # WebSocket sessions end after their last record of the range (their end, or not).
        pipeline.websockets.end_of_input()
        while not stop.is_set() and not await pipeline.websockets.wait_closed(0.2):
            tick()
        while not stop.is_set() and pipeline.waiting_dead_letters:
            await asyncio.sleep(0.1)  # dead letters waiting for room in the producer's queue
        if stop.is_set():
            await scheduler.aclose()
            await pipeline.websockets.finish_all()  # compared with what they have
            # Given up on the shadow: what is held at its guard will not go; no grace.
            grace = 0.0 if sender.gave_up else INTERRUPT_GRACE
            await _drain_until_forced(sender, stop, grace=grace)
    finally:
        await scheduler.aclose()
        pipeline.websockets.close()
        await sender.aclose()
        executor.shutdown(wait=True)
        if drawing is not None:
            drawing.draw(stats.handled, stats.lateness, force=True)
            drawing.close()
    return stats


def _end_us(config: ReplayConfig, spans: list[Span]) -> int | None:
    """The recorded time (µs) of the range's last exchange: the latest last record, or the
    window's end when that is earlier. None when it cannot be read."""
    try:
        stamps = record_times(config.settings, config.topic, {s.partition: s.last for s in spans})
    except KafkaUnavailable as exc:
        logger.debug("no ETA from the schedule: %s", exc)
        return None
    if not stamps:
        return None
    end_ms = max(stamps.values())
    until = config.selection.until_ms
    return (end_ms if until is None else min(end_ms, until)) * 1000


async def _drain_until_forced(sender: Senders, stop: StopSignals, grace: float) -> None:
    deadline = time.monotonic() + grace
    while sender.in_flight and not stop.forced and time.monotonic() < deadline:
        await sender.drain(0.1)


def _poll(consumer: Any, topic: str, pause: list[int], budget: int) -> list[Any]:
    try:
        if pause:
            consumer.pause([TopicPartition(topic, p) for p in pause])
        return list(consumer.consume(budget, _POLL_SECONDS))
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka consumer failed: {exc}") from exc
