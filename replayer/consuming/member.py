"""A worker: a consumer-group member that replays its partitions to a shadow.

`Worker` is the loop. Each turn it plans the read (`backpressure`), hands the
consumer thread (`groupconsumer`) the offsets to store and the partitions to
pause or resume, polls, books the records (`book`) and hands what the merge
into recorded-time order releases to the pipeline (built by `replayer.assembly`).

Pace: without a replay session a worker replays live, as records arrive
(`--speed max`), on the virtual clock (`replayer.pacing.clock`), optionally
under `--rate`: a group-wide figure, of which this worker takes the share of
the topic's partitions it holds, re-computed on every rebalance. A session
(`replayer.sessions.watch`), read from `<topic>.control` before the first
record is taken, replaces that pace and adds its time window to the selection
until it ends. Rebalances, a session's seek and the stop each let go of
partitions through the book's one `forget()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from replayer.assembly import Assembly, Outputs, ReplayConfig, Senders
from replayer.consuming.backpressure import Backpressure
from replayer.consuming.book import Keep, PartitionBook
from replayer.consuming.groupconsumer import GroupConsumer, offsets_text
from replayer.consuming.keptnothing import nothing_kept
from replayer.consuming.startfrom import StartFrom, StartPositions
from replayer.consuming.timeindex import since_offsets
from replayer.eventloop import run as run_loop
from replayer.pacing.clock import Pace
from replayer.pipeline import Pipeline
from replayer.results.summary import Progress, Stats
from replayer.selecting.selector import Selector
from replayer.sending.sender import Transport
from replayer.sessions.session import Session
from replayer.sessions.watch import SessionFollower
from replayer.stopping import StopSignals
from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.health import HealthState
from trafficmirror.plumbing.kafka import topic_partitions
from trafficmirror.plumbing.logs import Throttle
from trafficmirror.plumbing.runtime import settle_memory

logger = logging.getLogger(__name__)

#: Records handled before a selection that kept none of them is warned about.
KEPT_NOTHING_AFTER = 50

#: Seconds a revoked partition's in-flight requests may take before it is let go.
REVOKE_GRACE = 5.0


@dataclass(frozen=True, kw_only=True)
class WorkerConfig(ReplayConfig):
    """`trafficmirror worker`'s options: the replay's, the group's, and the stop's.

    `pace` defaults to as fast as records arrive, without a rate limit.
    `drain_timeout`: seconds in-flight requests may take after SIGTERM/SIGINT.
    `metrics_port`: serve `/metrics`, `/healthz` and `/readyz` there (None: not at all).
    `start_from`: where partitions without a committed offset start (`startfrom`;
    default latest); None leaves it to Kafka (`auto.offset.reset`: earliest).
    """

    group: str
    group_protocol: str = "consumer"
    drain_timeout: float = 20.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    start_from: StartFrom | None = field(default_factory=StartFrom)
    pace: Pace = field(default_factory=lambda: Pace(speed=None))


class Worker:
    """One group member: the loop, and the loop's side of rebalances (`groupconsumer.Listener`)."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        transport: Transport | None = None,
        health: HealthState | None = None,
    ) -> None:
        self.config = config
        # Share 0 until the group assigns partitions: the rate is the group's.
        self.assembly = Assembly(config, share=0.0)
        # Partition EOF tells the merge that a partition has nothing more for now.
        self.consumer_config = config.settings.consumer_config(
            config.group, config.group_protocol, **{"enable.partition.eof": True}
        )
        self.transport = transport
        self.book = PartitionBook(config.topic)
        self.backpressure = Backpressure(config.max_in_flight)
        self.stats = Stats()
        self.health = health or HealthState()
        self.health.set_ready_check(self._readiness)
        self.stopping = False
        self.total_partitions = 0
        self._pipeline: Pipeline | None = None
        self._kafka_errors = Throttle()
        self._warned = False  # about a selection that keeps nothing

    def _readiness(self) -> str | None:
        if self.stopping:
            return "stopping"
        return None if self.book.assigned else "no partitions assigned yet"

    def run(self, stop: StopSignals) -> Stats:
        """Consume and replay until `stop` is set; then drain, commit and leave the group."""
        config = self.config
        consumer = Consumer(self.consumer_config)
        try:
            partitions = topic_partitions(consumer, config.topic, config.settings.bootstrap_servers)
            self.total_partitions = len(partitions)
            outputs = self.assembly.open_outputs()
        except BaseException:
            consumer.close()
            raise
        try:
            settle_memory()
            return run_loop(self._main(consumer, stop, outputs))
        finally:
            outputs.comparison.close()
            outputs.dlq.close()

    async def _main(self, consumer: Any, stop: StopSignals, outputs: Outputs) -> Stats:
        config = self.config
        loop = asyncio.get_running_loop()
        starts = None
        if config.start_from is not None:
            starts = StartPositions(config.settings, config.topic, config.group, config.start_from)
        kafka = GroupConsumer(consumer, config.topic, self, starts)
        senders, pipeline = self.assembly.start(outputs, self.transport, self.stats)
        self._pipeline = pipeline
        self.book.abandon = pipeline.abandon
        scheduler = self.assembly.scheduler
        sessions = SessionFollower(
            config.settings, config.topic, config.group, scheduler, self._session_window
        )
        abandoned = 0
        try:
            await sessions.start(loop)
            await kafka.subscribe()
            logger.info(
                "worker joined group %r on topic %r, replaying to %s (concurrency %d; %s; "
                "uncommitted partitions start from %s)",
                config.group,
                config.topic,
                self.assembly.destination,
                config.concurrency,
                config.selection.describe(),
                "earliest" if config.start_from is None else config.start_from.describe(),
            )
            await self._replay(kafka, pipeline, senders, sessions, stop)
            abandoned = await self._drain(kafka, pipeline, senders, outputs, stop)
        finally:
            self.stopping = True
            await loop.run_in_executor(None, sessions.close)
            await scheduler.aclose()
            pipeline.websockets.close()
            await senders.aclose()
            # close() leaves the group; it runs the revoke callback, which needs this loop.
            await kafka.close()
            self.book.close()
        left = ""
        if abandoned:
            left = f"; {abandoned} in-flight requests abandoned at the drain timeout"
        logger.info(
            "worker stopped: %s; committed %s%s",
            self.stats.line(),
            offsets_text(self.book.committed),
            left,
        )
        logger.info("%s", outputs.comparison.line())
        logger.info("%s", outputs.dlq.line())
        if not self._warned:
            self._warn_if_nothing_kept()
        return self.stats

    def _warn_if_nothing_kept(self) -> None:
        """Warn (once) when the selection has dropped every record so far."""
        selector = self._pipeline.selector if self._pipeline is not None else None
        selection = selector.options if selector is not None else self.config.selection
        empty = nothing_kept(self.stats, selection)
        if empty is not None:
            logger.warning("%s", empty)
            self._warned = True

    async def _replay(
        self,
        kafka: GroupConsumer,
        pipeline: Pipeline,
        senders: Senders,
        sessions: SessionFollower,
        stop: StopSignals,
    ) -> None:
        """Read and replay until `stop` is set."""
        book = self.book
        limit = self.backpressure.limit
        interval = self.config.progress_interval
        progress = Progress(self.stats, interval)
        lag_due = time.monotonic() + interval
        while not stop.is_set():
            self.health.beat()
            now = time.monotonic()
            turn = self.backpressure.turn(
                pipeline.in_flight, now, holding=senders.holding, paused=bool(book.paused)
            )
            if turn.wait:
                await pipeline.wait_for_room(limit, 0.05)
                book.release(limit - pipeline.in_flight, pipeline.handle)
                continue
            seek = sessions.take_seek()
            if seek is not None and seek.since_us is not None:
                await self._seek_to(seek.since_us, kafka)
            store, pause, resume = self._housekeeping(pipeline.in_flight, turn.pause)
            lag_from = None
            if now >= lag_due:
                lag_due = now + interval
                lag_from = dict(book.stored)
            messages, lag = await kafka.poll(store, pause, resume, turn.budget, lag_from)
            for message in messages:
                if not self._dispatch(message):
                    await self._restart(message)
            book.release(limit - pipeline.in_flight, pipeline.handle)
            if lag is not None:
                book.record_lag(lag)
            progress.tick(pipeline.in_flight, f", partitions {sorted(book.assigned)}")
            if not self._warned and self.stats.handled >= KEPT_NOTHING_AFTER:
                self._warn_if_nothing_kept()

    async def _drain(
        self,
        kafka: GroupConsumer,
        pipeline: Pipeline,
        senders: Senders,
        outputs: Outputs,
        stop: StopSignals,
    ) -> int:
        """Graceful stop: nothing new is read, in-flight requests finish, what is done is committed.

        The consumer is polled all the while (rebalances, liveness) for up to
        the drain timeout (or until a second signal); then the results
        (`<topic>.results`) and the dead letters (`<topic>.dlq`) are flushed,
        before the offsets they belong to are stored and committed.
        Returns how many records were abandoned (the next owner replays them).
        """
        self.stopping = True
        kafka.starts = None  # a partition assigned now is the next owner's to start
        drain_timeout = self.config.drain_timeout
        # Not sent yet (merge, due time, rate): left uncommitted for the next owner.
        await self.book.forget(self.book.assigned, Keep.POSITIONS)
        await self.assembly.scheduler.aclose()
        logger.info(
            "draining %d in-flight requests (at most %gs)", pipeline.in_flight, drain_timeout
        )
        deadline = time.monotonic() + drain_timeout
        while (
            (pipeline.in_flight or pipeline.waiting_dead_letters)
            and time.monotonic() < deadline
            and not stop.forced
        ):
            self.health.beat()
            store, pause, _ = self._housekeeping(pipeline.in_flight, True)
            await kafka.poll(store, pause, [], 1)  # what it fetches is the next owner's
            await pipeline.wait_for_room(1, 0.01)
        abandoned = pipeline.in_flight + pipeline.waiting_dead_letters
        await senders.aclose()  # whatever is left is replayed by the next owner
        loop = asyncio.get_running_loop()
        # The results of what is committed next must be in Kafka first.
        await loop.run_in_executor(None, outputs.comparison.close, drain_timeout)
        await loop.run_in_executor(None, outputs.dlq.close, drain_timeout)
        await kafka.commit(self.book.uncommitted(self.book.assigned))
        return abandoned

    def _dispatch(self, message: Any) -> bool:
        """Book a fetched message (or note its partition's end); False if its offset went back."""
        error = message.error()
        if error is None:
            return self.book.admit(message)
        if error.code() == KafkaError._PARTITION_EOF:
            self.book.merger.end(message.partition())
        elif error.fatal():
            raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}")
        elif self._kafka_errors.allow(int(error.code())):
            logger.warning("Kafka: %s", error.str())
        return True

    async def _restart(self, message: Any) -> None:
        """The consumer went back (an offset reset): restart the partition's book there."""
        partition, offset = message.partition(), message.offset()
        logger.warning(
            "partition %d went back to offset %d; restarting its tracking", partition, offset
        )
        # What was held or in flight before the reset no longer decides its position.
        await self.book.forget([partition], Keep.ASSIGNMENT)
        self.book.admit(message)

    def _housekeeping(
        self, in_flight: int, saturated: bool
    ) -> tuple[list[TopicPartition], list[int], list[int]]:
        """Offsets to store now, and partitions to pause or resume (backpressure)."""
        book = self.book
        store = book.to_store()
        pause, resume = self.backpressure.changes(
            book.assigned, book.paused, in_flight, pause=saturated or self.stopping
        )
        book.paused.update(pause)
        book.paused.difference_update(resume)
        if pause and not self.stopping:
            logger.debug("pausing %s: %d records in flight", pause, in_flight)
        if resume:
            logger.debug("resuming %s: %d records in flight", resume, in_flight)
        return store, pause, resume

    # -- the loop's side of the consumer (groupconsumer.Listener) -------------

    async def assigned(self, partitions: list[int]) -> None:
        """Take `partitions`; reading starts at the group's committed offsets."""
        self.book.assign(partitions)
        self._apply_share()
        if partitions:
            logger.info(
                "assigned partitions %s (now holding %s)",
                sorted(partitions),
                sorted(self.book.assigned),
            )

    async def revoked(self, partitions: list[int]) -> list[TopicPartition]:
        """Give `partitions` up; returns what is done and not committed, to commit now.

        Their in-flight requests get a short grace period (none when stopping);
        what is still in flight after it is replayed by the next owner.
        """
        grace = 0.0 if self.stopping else min(REVOKE_GRACE, self.config.drain_timeout)
        return await self._let_go(partitions, "revoked", grace)

    async def lost(self, partitions: list[int]) -> None:
        """`partitions` were taken away (this member was fenced): let go without a commit."""
        await self._let_go(partitions, "lost", 0.0)

    def committed(self, offsets: list[TopicPartition]) -> None:
        self.book.note_committed(offsets)

    async def _let_go(self, partitions: list[int], how: str, grace: float) -> list[TopicPartition]:
        left = await self.book.forget(partitions, Keep.NOTHING, grace)
        self._apply_share()
        if partitions:
            more = f"; {left.unfinished} unfinished records go to the next owner"
            logger.info(
                "%s partitions %s (now holding %s)%s",
                how,
                sorted(partitions),
                sorted(self.book.assigned),
                more if left.unfinished else "",
            )
        return left.uncommitted

    def _apply_share(self) -> None:
        total = self.total_partitions
        held = len(self.book.assigned)
        self.assembly.scheduler.set_share(min(held / total, 1.0) if total else 1.0)

    # -- replay sessions --------------------------------------------------------

    def _session_window(self, session: Session | None) -> None:
        """Select the session's time window (or none again) from now on."""
        options = self.config.selection
        if session is not None:
            since_ms, until_ms = session.window_ms
            options = replace(options, since_ms=since_ms, until_ms=until_ms)
        if self._pipeline is not None:
            self._pipeline.selector = Selector(options)

    async def _seek_to(self, since_us: int, kafka: GroupConsumer) -> None:
        """Move the held partitions to the start of a session's window and commit there.

        Like a revoke and a re-assignment at another offset: what waits for its
        due time is dropped, and the new position is committed at once.
        """
        config = self.config
        partitions = sorted(self.book.assigned)
        if not partitions:
            return
        loop = asyncio.get_running_loop()
        offsets = await loop.run_in_executor(
            None, since_offsets, config.settings, config.topic, partitions, since_us
        )
        partitions = [p for p in partitions if p in self.book.assigned]  # a rebalance meanwhile
        await self.book.forget(partitions, Keep.ASSIGNMENT)
        targets = [TopicPartition(config.topic, p, offsets[p]) for p in partitions]
        await kafka.seek(targets)
        logger.info(
            "replay session: partitions moved to %s",
            offsets_text({tp.partition: tp.offset for tp in targets}),
        )
