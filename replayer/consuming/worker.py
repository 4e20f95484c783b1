"""`trafficmirror worker`: a consumer-group member that replays its partitions to a shadow.

Threads and ownership: an asyncio loop (the caller's thread) sends requests and
owns all bookkeeping; one executor thread owns the `confluent_kafka.Consumer`,
and every call on the consumer runs there, one at a time. Each loop turn hands
the consumer thread the offsets to store and the partitions to pause or resume,
then it polls for up to 100 ms while the loop keeps sending. Rebalance
callbacks run inside that poll, on the consumer thread; they hand their work to
the loop (`run_coroutine_threadsafe`) and wait for it, which cannot deadlock
because the loop is never waiting on anything but the poll at that moment.

At least once: an offset is stored (and auto-committed by librdkafka in the
background) only when `OffsetTracker` says it and everything before it in the
partition finished. Backpressure: when too many records are in flight, the
assigned partitions are paused, and resumed once half of them finished; the
consumer is polled all the while, so the group never sees a stalled member.
The same pause holds while the error-rate guard backs off from a failing
shadow (`replayer.sending.guard`): what is in flight waits, nothing new is read.

Revocation: in-flight requests of the revoked partitions get a short grace
period, then what is done is stored and committed synchronously and the
partitions are forgotten; whatever was still in flight is replayed by the next
owner. Lost partitions (the member was fenced) are forgotten without a commit.

Pace: without a session a worker replays live, as records arrive (`--speed
max`), optionally under `--rate`; the records of its partitions are merged
into recorded-time order (`replayer.consuming.merge`, with partition EOF telling when a
partition has nothing more for now) and scheduled on the virtual clock
(`replayer.pacing.clock`). A record waiting for its due time counts as in flight for
the backpressure bound; on revocation it is dropped at once (the next owner
replays it). `--rate R` is a group-wide figure: this worker takes the share
of R that matches its share of the topic's partitions, re-computed on every
rebalance. `set_pace()` changes the pace of a running worker (sessions).

Replay sessions (`replayer.sessions.watch`): before taking its first record,
the worker reads the group's session from `<topic>.control` and then follows
it; a session's pace replaces the worker's own (`--speed`, `--rate`) and its
time window joins the select step until the session ends. A new session
with `--since` moves the partitions the worker holds to the window's start
(`_seek_to`): like a revoke and a re-assignment at another offset, what
waits for its due time is dropped and the new position is committed at once.

SIGTERM/SIGINT: stop fetching, keep polling while in-flight requests finish
(up to the drain timeout), flush the replay results (`<topic>.results`) and
the dead letters (`<topic>.dlq`, see `replayer.results.dlq`), store
and commit synchronously, close the consumer (which leaves the group), log one
summary line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Gauge

from replayer.assembly import IN_FLIGHT_PER_SLOT, Senders
from replayer.consuming.merge import MERGE_LIMIT_BYTES, PartitionMerger
from replayer.consuming.offsets import OffsetTracker, Ticket
from replayer.consuming.timeindex import since_offsets
from replayer.eventloop import loop_factory
from replayer.eventloop import run as run_loop
from replayer.models import Record, Result, Target
from replayer.pacing.clock import Pace, Scheduler
from replayer.pipeline import Pipeline, Progress, Stats
from replayer.results.dlq import DeadLetters
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.selecting.safety import SafetyOptions
from replayer.selecting.selector import SelectOptions, Selector
from replayer.sending.guard import GuardOptions
from replayer.sending.sender import Transport
from replayer.sessions.session import Session
from replayer.sessions.watch import SessionFollower
from replayer.stopping import StopSignals
from schemas.codec import Codec
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.health import HealthServer, HealthState
from trafficmirror.plumbing.kafka import KafkaSettings, topic_partitions
from trafficmirror.plumbing.runtime import settle_memory

logger = logging.getLogger("trafficmirror.replayer.worker")

T = TypeVar("T")

ASSIGNED = Gauge("trafficmirror_replayer_assigned_partitions", "Partitions this worker holds.")
LAG = Gauge(
    "trafficmirror_replayer_consumer_lag",
    "Records of the partition not yet replayed (high watermark minus committable offset), "
    "refreshed with the progress line.",
    ["partition"],
)

#: Seconds the in-flight bound may stay reached, with no request finishing, before
#: the partitions are paused. While requests finish, the consumer is asked for
#: as many records as finished (librdkafka's bounded prefetch queue holds the
#: rest), so polling goes on. Pausing purges that queue and a resume takes about
#: a second to fetch again, so pausing on every saturation would starve a fast
#: shadow. Pausing is for a stuck shadow: polling then goes on with nothing to
#: deliver, which serves rebalances and keeps the member alive.
PAUSE_AFTER = 1.0
#: Records the merge into recorded-time order may hold while a partition has not
#: delivered (nor reached its end); beyond it the oldest goes out anyway.
MERGE_LIMIT = 2000
#: Seconds a revoked partition's in-flight requests may take before it is let go.
REVOKE_GRACE = 5.0
_BATCH = 500
_POLL_SECONDS = 0.1
_ERROR_LOG_INTERVAL = 30.0


def run_worker(
    *,
    settings: KafkaSettings,
    topic: str,
    group: str,
    group_protocol: str = "consumer",
    target: str,
    concurrency: int = 64,
    timeout: float = 30.0,
    drain_timeout: float = 20.0,
    schema_registry_url: str | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
    transport: Transport | None = None,
    stop_event: threading.Event | None = None,
    progress_interval: float = 10.0,
    comparison: ComparisonOptions | None = None,
    guardrails: GuardOptions | None = None,
    safety: SafetyOptions | None = None,
    pace: Pace | None = None,
    selection: SelectOptions | None = None,
) -> Stats:
    """Replay `topic` as a member of `group` to `target` until stopped; return the counts.

    `selection` picks what is sent (default: only GET, HEAD and OPTIONS).

    Every replay is compared with the recorded response and its result written
    to `<topic>.results` (see `comparison`); records that cannot be decoded or
    sent go to `<topic>.dlq`; `safety` says whether records recorded from the
    target's own host are sent (`replayer.selecting.safety`). Stops on SIGTERM/SIGINT (when
    called in the main thread) or when `stop_event` is set. Raises
    `TopicNotFound` if the topic does not exist, `KafkaUnavailable` on a fatal
    consumer error. `transport` replaces the HTTP client (tests). `pace`:
    default as fast as records arrive, no rate limit; its `rate` is the
    group's, of which this worker takes its share of the partitions.
    `guardrails`: the baseline's own cap and timeout, and the shadow's
    error-rate guard.
    """
    loop_factory()  # a bad TRAFFICMIRROR_EVENT_LOOP is a usage error before anything starts
    worker = Worker(
        settings=settings,
        topic=topic,
        group=group,
        group_protocol=group_protocol,
        target=Target.parse(target),
        codec=Codec(registry_url=schema_registry_url),
        transport=transport,
        concurrency=concurrency,
        timeout=timeout,
        drain_timeout=drain_timeout,
        progress_interval=progress_interval,
        comparison=comparison,
        guardrails=guardrails,
        safety=safety,
        pace=pace,
        selection=selection,
    )
    health = None
    if metrics_port is not None:
        health = HealthServer(worker.health, host=metrics_host, port=metrics_port).start()
        logger.info("health and metrics on http://%s:%d/metrics", metrics_host, health.port)
    try:
        with StopSignals(stop_event, "draining in-flight requests") as stop:
            return worker.run(stop)
    finally:
        if health is not None:
            health.close()


class Worker:
    """One group member; see the module docstring for how the pieces fit."""

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        topic: str,
        group: str,
        group_protocol: str,
        target: Target,
        codec: Codec,
        transport: Transport | None,
        concurrency: int,
        timeout: float,
        drain_timeout: float,
        progress_interval: float = 10.0,
        comparison: ComparisonOptions | None = None,
        guardrails: GuardOptions | None = None,
        safety: SafetyOptions | None = None,
        pace: Pace | None = None,
        selection: SelectOptions | None = None,
    ) -> None:
        self.settings = settings
        self.safety = safety
        self.comparison_options = comparison or ComparisonOptions()
        self.selector = Selector(selection or SelectOptions())
        self.topic = topic
        self.group = group
        # Partition EOF tells the merge that a partition has nothing more for now.
        self.config = settings.consumer_config(
            group, group_protocol, **{"enable.partition.eof": True}
        )
        self.target = target
        self.codec = codec
        self.transport = transport
        self.concurrency = concurrency
        self.timeout = timeout
        self.drain_timeout = drain_timeout
        self.progress_interval = progress_interval
        self.guardrails = guardrails or GuardOptions()
        # Requests of both targets count: each has its own cap (replayer.assembly).
        slots = concurrency
        if self.comparison_options.baseline:
            slots += self.guardrails.baseline_concurrency or concurrency
        self.max_in_flight = max(slots * IN_FLIGHT_PER_SLOT, 64)
        self.health = HealthState()
        self.health.set_ready_check(self._readiness)
        self.tracker = OffsetTracker()
        self.stats = Stats()
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.stored: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.pending: dict[int, set[asyncio.Future[Result]]] = {}
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error_logged: dict[int, float] = {}
        self.scheduler = Scheduler(pace or Pace(speed=None), share=0.0)
        self.merger: PartitionMerger[Record] = PartitionMerger(
            limit=MERGE_LIMIT, limit_bytes=MERGE_LIMIT_BYTES
        )
        self.total_partitions = 0
        self._pipeline: Pipeline | None = None
        self._tickets: dict[tuple[int, int], Ticket] = {}

    def set_pace(self, pace: Pace) -> None:
        """Replay at `pace` from now on (its rate is the group's; this worker takes its share)."""
        self.scheduler.set_pace(pace)

    def _apply_share(self) -> None:
        total = self.total_partitions
        self.scheduler.set_share(min(len(self.assigned) / total, 1.0) if total else 1.0)

    def _readiness(self) -> str | None:
        if self.stopping:
            return "stopping"
        return None if self.assigned else "no partitions assigned yet"

    # -- the run ----------------------------------------------------------------

    def run(self, stop: StopSignals) -> Stats:
        """Consume and replay until `stop` is set; then drain, commit and leave the group."""
        consumer = Consumer(self.config)
        try:
            self.total_partitions = len(
                topic_partitions(consumer, self.topic, self.settings.bootstrap_servers)
            )
            comparison = Comparison.open(
                self.settings, self.topic, self.target, self.comparison_options
            )
            dlq = DeadLetters(self.settings, self.topic)
        except BaseException:
            consumer.close()
            raise
        try:
            settle_memory()
            return run_loop(self._main(consumer, stop, comparison, dlq))
        finally:
            comparison.close()
            dlq.close()

    async def _main(
        self,
        consumer: Any,
        stop: StopSignals,
        comparison: Comparison | None = None,
        dlq: DeadLetters | None = None,
    ) -> Stats:
        self._loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(1, thread_name_prefix="trafficmirror-consumer")
        sender = Senders.open(
            transport=self.transport,
            concurrency=self.concurrency,
            timeout=self.timeout,
            baseline=comparison is not None and comparison.baseline is not None,
            options=self.guardrails,
        )
        pipeline = Pipeline(
            codec=self.codec,
            target=self.target,
            sender=sender.shadow,
            stats=self.stats,
            comparison=comparison,
            baseline_sender=sender.baseline,
            dlq=dlq,
            safety=self.safety,
            scheduler=self.scheduler,
            selector=self.selector,
        )
        self._pipeline = pipeline
        progress = Progress(self.stats, self.progress_interval)
        run = self._loop.run_in_executor
        abandoned = 0
        sessions = SessionFollower(
            self.settings, self.topic, self.group, self.scheduler, self._session_window
        )
        try:
            await sessions.start(self._loop)
            await run(executor, self._subscribe, consumer)
            logger.info(
                "worker joined group %r on topic %r, replaying to %s (concurrency %d; %s)",
                self.group,
                self.topic,
                self.target.origin,
                self.concurrency,
                self.selector.options.describe(),
            )
            lag_due = time.monotonic() + self.progress_interval
            saturated_since: float | None = None
            while not stop.is_set():
                self.health.beat()
                now = time.monotonic()
                # Never read more than the in-flight bound leaves room for.
                # The merge's records are bounded on their own (MERGE_LIMIT): they
                # wait for more reading, so they must not stop it.
                budget = min(_BATCH, self.max_in_flight - pipeline.in_flight)
                if budget > 0:
                    saturated_since = None
                elif saturated_since is None:
                    saturated_since = now
                saturated = saturated_since is not None and now - saturated_since >= PAUSE_AFTER
                # The guard backs off from a failing shadow: take nothing new meanwhile.
                saturated = saturated or sender.holding
                if budget <= 0 and not saturated and not self.paused:
                    await pipeline.wait_for_room(self.max_in_flight, 0.05)
                    for record in self.merger.ready(self.max_in_flight - pipeline.in_flight):
                        self._handle(record, pipeline)
                    continue
                seek = sessions.take_seek()
                if seek is not None and seek.since_us is not None:
                    await self._seek_to(seek.since_us, consumer, executor)
                store, pause, resume = self._housekeeping(pipeline, saturated)
                want_lag = now >= lag_due
                if want_lag:
                    lag_due = now + self.progress_interval
                budget = max(budget, 1)
                messages, lag = await run(
                    executor, self._poll, consumer, store, pause, resume, want_lag, budget
                )
                for message in messages:
                    self._dispatch(message)
                for record in self.merger.ready(self.max_in_flight - pipeline.in_flight):
                    self._handle(record, pipeline)
                if lag is not None:
                    self._record_lag(lag)
                progress.tick(pipeline.in_flight, f", partitions {sorted(self.assigned)}")

            # Graceful stop: no new records, keep polling (rebalances, liveness) while
            # in-flight requests finish, then commit what is done.
            self.stopping = True
            # Not sent yet (merge, due time, rate): left uncommitted for the next owner.
            self.merger.forget(list(self.merger.partitions))
            await self.scheduler.aclose()
            logger.info(
                "draining %d in-flight requests (at most %gs)",
                pipeline.in_flight,
                self.drain_timeout,
            )
            deadline = time.monotonic() + self.drain_timeout
            while (
                (pipeline.in_flight or pipeline.waiting_dead_letters)
                and time.monotonic() < deadline
                and not stop.forced
            ):
                self.health.beat()
                store, pause, _ = self._housekeeping(pipeline, True)
                messages, _ = await run(executor, self._poll, consumer, store, pause, [], False, 1)
                await pipeline.wait_for_room(1, 0.01)
            abandoned = pipeline.in_flight + pipeline.waiting_dead_letters
            await sender.aclose()  # whatever is left is replayed by the next owner
            if comparison is not None:
                # The results of what is committed next must be in Kafka first.
                await run(None, comparison.close, self.drain_timeout)
            if dlq is not None:
                await run(None, dlq.close, self.drain_timeout)
            await run(executor, self._commit, consumer, self._uncommitted(self.assigned))
        finally:
            self.stopping = True
            await run(None, sessions.close)
            await self.scheduler.aclose()
            await sender.aclose()
            # close() leaves the group; it runs the revoke callback, which needs this loop.
            await run(executor, consumer.close)
            executor.shutdown(wait=True)
            ASSIGNED.set(0)
        left = ""
        if abandoned:
            left = f"; {abandoned} in-flight requests abandoned at the drain timeout"
        logger.info(
            "worker stopped: %s; committed %s%s",
            self.stats.line(),
            _offsets_text(self.committed),
            left,
        )
        if comparison is not None:
            logger.info("%s", comparison.line())
        if dlq is not None:
            logger.info("%s", dlq.line())
        return self.stats

    def _subscribe(self, consumer: Any) -> None:
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # -- on the loop thread -------------------------------------------------------

    def _dispatch(self, message: Any) -> None:
        """Track `message` and hand it to the merge (or note its partition's end)."""
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self.merger.end(message.partition())
                return
            if error.fatal():
                raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}")
            self._log_kafka_error(error)
            return
        partition = message.partition()
        if partition not in self.assigned or self.stopping:
            return  # fetched before a revoke or the stop: the next owner reads it
        offset = message.offset()
        try:
            ticket = self.tracker.start(partition, offset)
        except ValueError:
            # The consumer went back (an offset reset): what was in flight for the
            # partition no longer decides its position.
            logger.warning(
                "partition %d went back to offset %d; restarting its tracking", partition, offset
            )
            self.tracker.forget(partition)
            self.stored.pop(partition, None)
            ticket = self.tracker.start(partition, offset)
            # Held by the merge before the reset: not ours to send any more.
            for stale in self.merger.forget([partition]):
                self._tickets.pop((stale.partition, stale.offset), None)
            self.merger.track([partition])
        record = Record.from_message(message)
        self._tickets[(partition, offset)] = ticket
        self.merger.add(partition, record.timestamp_ms or 0, record, record.size)

    def _handle(self, record: Record, pipeline: Pipeline) -> None:
        ticket = self._tickets.pop((record.partition, record.offset), None)
        if ticket is None or record.partition not in self.assigned:
            return  # its partition was revoked or reset meanwhile
        future = pipeline.handle(record)
        pending = self.pending.setdefault(record.partition, set())
        pending.add(future)
        future.add_done_callback(lambda done: self._finished(ticket, pending, done))

    def _finished(
        self,
        ticket: Ticket,
        pending: set[asyncio.Future[Result]],
        future: asyncio.Future[Result],
    ) -> None:
        pending.discard(future)
        if not future.cancelled():
            self.tracker.finish(ticket)

    def _housekeeping(
        self, pipeline: Pipeline, saturated: bool
    ) -> tuple[list[TopicPartition], list[int], list[int]]:
        """Offsets to store now, and partitions to pause or resume (backpressure)."""
        store = []
        for partition in sorted(self.assigned):
            position = self.tracker.next_committable(partition)
            if position is not None and self.stored.get(partition) != position:
                store.append(TopicPartition(self.topic, partition, position))
                self.stored[partition] = position
        pause: list[int] = []
        resume: list[int] = []
        if self.stopping or saturated:
            pause = sorted(self.assigned - self.paused)
            self.paused.update(pause)
            if pause and not self.stopping:
                logger.debug("pausing %s: %d records in flight", pause, pipeline.in_flight)
        elif self.paused and pipeline.in_flight <= self.max_in_flight // 2:
            resume = sorted(self.paused & self.assigned)
            self.paused.clear()
            logger.debug("resuming %s: %d records in flight", resume, pipeline.in_flight)
        return store, pause, resume

    def _uncommitted(self, partitions: set[int] | list[int]) -> list[TopicPartition]:
        """Committable positions of `partitions` that differ from the last commit."""
        offsets = []
        for partition in sorted(partitions):
            position = self.tracker.next_committable(partition)
            if position is not None and self.committed.get(partition) != position:
                offsets.append(TopicPartition(self.topic, partition, position))
        return offsets

    def _record_lag(self, lag: dict[int, int]) -> None:
        for partition, value in lag.items():
            if partition in self.assigned:
                LAG.labels(str(partition)).set(value)

    def _log_kafka_error(self, error: Any) -> None:
        now = time.monotonic()
        code = int(error.code())
        if now - self._error_logged.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._error_logged[code] = now
            logger.warning("Kafka: %s", error.str())

    async def _assigned(self, partitions: list[int]) -> None:
        for partition in partitions:
            # Reading restarts at the committed offset: no earlier state applies.
            self.tracker.forget(partition)
            self.stored.pop(partition, None)
            self.paused.discard(partition)
            self.assigned.add(partition)
        self.merger.track(partitions)
        self._apply_share()
        ASSIGNED.set(len(self.assigned))
        if partitions:
            logger.info(
                "assigned partitions %s (now holding %s)", sorted(partitions), sorted(self.assigned)
            )

    async def _released(
        self, partitions: list[int], grace: float, lost: bool
    ) -> list[TopicPartition]:
        """Let go of `partitions`: wait up to `grace` for their requests, return what to commit."""
        # Not sent yet (held for the merge or the due time): the next owner replays them.
        for record in self.merger.forget(partitions):
            self._tickets.pop((record.partition, record.offset), None)
        if self._pipeline is not None:
            self._pipeline.abandon(set(partitions))
        waiting = [f for p in partitions for f in self.pending.get(p, ())]
        if waiting and grace > 0:
            await asyncio.wait(waiting, timeout=grace)
        commit = [] if lost else self._uncommitted(partitions)
        left = 0
        for partition in partitions:
            left += self.tracker.in_flight(partition)
            self.tracker.forget(partition)
            self.assigned.discard(partition)
            self.paused.discard(partition)
            self.stored.pop(partition, None)
            self.pending.pop(partition, None)
            try:
                LAG.remove(str(partition))
            except KeyError:
                pass
        self._apply_share()
        ASSIGNED.set(len(self.assigned))
        if partitions:
            how = "lost" if lost else "revoked"
            unfinished = f"; {left} unfinished records go to the next owner" if left else ""
            logger.info(
                "%s partitions %s (now holding %s)%s",
                how,
                sorted(partitions),
                sorted(self.assigned),
                unfinished,
            )
        return commit

    def _session_window(self, session: Session | None) -> None:
        """Select the session's time window (or none again) from now on."""
        options = self.selector.options
        if session is not None:
            since_ms, until_ms = session.window_ms
            options = replace(options, since_ms=since_ms, until_ms=until_ms)
        if self._pipeline is not None:
            self._pipeline.selector = Selector(options)

    async def _seek_to(self, since_us: int, consumer: Any, executor: ThreadPoolExecutor) -> None:
        """Move the held partitions to the start of a session's window and commit there."""
        loop = asyncio.get_running_loop()
        partitions = sorted(self.assigned)
        if not partitions:
            return
        offsets = await loop.run_in_executor(
            None, since_offsets, self.settings, self.topic, partitions, since_us
        )
        partitions = [p for p in partitions if p in self.assigned]  # a rebalance meanwhile
        for record in self.merger.forget(partitions):
            self._tickets.pop((record.partition, record.offset), None)
        if self._pipeline is not None:
            self._pipeline.abandon(set(partitions))
        for partition in partitions:
            self.tracker.forget(partition)
            self.stored.pop(partition, None)
            self.pending.pop(partition, None)
        self.merger.track(partitions)
        targets = [TopicPartition(self.topic, p, offsets[p]) for p in partitions]
        await loop.run_in_executor(executor, self._seek, consumer, targets)
        logger.info(
            "replay session: partitions moved to %s",
            _offsets_text({tp.partition: tp.offset for tp in targets}),
        )

    # -- on the consumer thread ---------------------------------------------------

    def _seek(self, consumer: Any, targets: list[TopicPartition]) -> None:
        for tp in targets:
            try:
                consumer.seek(tp)
            except KafkaException as exc:
                logger.warning(
                    "cannot move partition %d to offset %d: %s", tp.partition, tp.offset, exc
                )
        self._commit(consumer, targets)

    def _poll(
        self,
        consumer: Any,
        store: list[TopicPartition],
        pause: list[int],
        resume: list[int],
        want_lag: bool,
        budget: int,
    ) -> tuple[list[Any], dict[int, int] | None]:
        try:
            if store:
                self._store(consumer, store)
            if pause:
                consumer.pause([TopicPartition(self.topic, p) for p in pause])
            if resume:
                consumer.resume([TopicPartition(self.topic, p) for p in resume])
            messages = consumer.consume(budget, _POLL_SECONDS)
            lag = self._lag(consumer) if want_lag else None
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if error is not None and hasattr(error, "fatal") and error.fatal():
                raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}") from exc
            logger.warning("Kafka: %s", exc)
            return [], None
        return list(messages), lag

    def _store(self, consumer: Any, offsets: list[TopicPartition]) -> None:
        try:
            consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # A partition revoked in the meantime: its offsets are not ours to store.
            logger.debug("store_offsets %s: %s", offsets, exc)

    def _lag(self, consumer: Any) -> dict[int, int]:
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            except KafkaException:
                continue
            done = self.stored.get(tp.partition)
            if done is None:
                (position,) = consumer.position([tp])
                done = position.offset if position.offset >= 0 else high
            lag[tp.partition] = max(int(high) - done, 0)
        return lag

    def _commit(self, consumer: Any, offsets: list[TopicPartition]) -> None:
        """Store and commit `offsets` synchronously (a background auto-commit may not come)."""
        if not offsets:
            return
        # Stored too: librdkafka's auto-commit on revoke must not commit an older one.
        self._store(consumer, offsets)
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            committed = {tp.partition: tp.offset for tp in offsets}
            logger.warning("could not commit offsets %s: %s", _offsets_text(committed), exc)
            return
        for tp in offsets:
            self.committed[tp.partition] = tp.offset

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the event loop from the consumer thread and wait for it."""
        if self._loop is None:  # pragma: no cover (callbacks only come after _main started)
            raise RuntimeError("rebalance callback before the event loop started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_loop(self._assigned([tp.partition for tp in partitions]))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        grace = 0.0 if self.stopping else min(REVOKE_GRACE, self.drain_timeout)
        commit = self._on_loop(self._released([tp.partition for tp in partitions], grace, False))
        self._commit(consumer, commit)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_loop(self._released([tp.partition for tp in partitions], 0.0, lost=True))


def _offsets_text(offsets: dict[int, int]) -> str:
    if not offsets:
        return "nothing"
    return ", ".join(f"{p}@{o}" for p, o in sorted(offsets.items()))
