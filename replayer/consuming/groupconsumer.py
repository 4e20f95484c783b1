"""The worker's Kafka consumer and the one thread that makes every call on it.

An asyncio loop (the caller's thread) sends requests and owns all bookkeeping
(`replayer.consuming.book`); one executor thread owns the
`confluent_kafka.Consumer`, and every call on it runs there, one at a time:
subscribe, poll (with the offsets to store and the partitions to pause or
resume handed over first), lag, seek, commit, close. A poll waits up to
100 ms while the loop keeps sending. Rebalance callbacks run inside a poll
(or `close()`), on this thread; they hand their work to the loop
(`run_coroutine_threadsafe`) and wait for it, which cannot deadlock because
the loop is never waiting on anything but that poll at the moment. A
partition assigned without a committed offset starts where `--start-from`
says (`startfrom`), and that position is committed in the assignment callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

from replayer.consuming.startfrom import StartPositions
from trafficmirror.plumbing.errors import KafkaUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds one poll waits for records; the loop goes on sending meanwhile.
POLL_SECONDS = 0.1


class Listener(Protocol):
    """The loop's side of the consumer: rebalances, and what got committed."""

    async def assigned(self, partitions: list[int]) -> None:
        """The group handed `partitions` to this member."""

    async def revoked(self, partitions: list[int]) -> list[TopicPartition]:
        """`partitions` go to another member; returns the offsets to commit before they go."""

    async def lost(self, partitions: list[int]) -> None:
        """`partitions` were taken away (fenced): nothing may be committed for them."""

    def committed(self, offsets: list[TopicPartition]) -> None:
        """`offsets` are committed (called on the consumer thread while the loop waits)."""


class GroupConsumer:
    """A `confluent_kafka.Consumer` on one topic: called from the loop, run on its own thread."""

    def __init__(
        self,
        consumer: Any,
        topic: str,
        listener: Listener,
        starts: StartPositions | None = None,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.listener = listener
        #: Where partitions without a committed offset start (None: `auto.offset.reset`).
        self.starts = starts
        self._starts_made = starts  # closed with the consumer (`starts` is unset at a drain)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="trafficmirror-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def subscribe(self) -> None:
        """Join the group on the topic; the listener hears of every rebalance from now on."""
        self._loop = asyncio.get_running_loop()
        await self._call(self._subscribe)

    async def poll(
        self,
        store: list[TopicPartition],
        pause: list[int],
        resume: list[int],
        budget: int,
        lag_from: Mapping[int, int] | None = None,
    ) -> tuple[list[Any], dict[int, int] | None]:
        """Store `store`, pause and resume, then fetch up to `budget` messages.

        With `lag_from` (the offsets stored per partition) the lag of every
        assigned partition comes back too. A Kafka error that is not fatal is
        logged and the poll returns nothing; a fatal one raises `KafkaUnavailable`.
        """
        return await self._call(self._poll, store, pause, resume, budget, lag_from)

    async def seek(self, targets: list[TopicPartition]) -> None:
        """Move partitions to `targets` and commit those positions."""
        await self._call(self._seek, targets)

    async def commit(self, offsets: list[TopicPartition]) -> None:
        """Store and commit `offsets` synchronously."""
        await self._call(self._commit, offsets)

    async def close(self) -> None:
        """Leave the group (the revoke callback runs, on the loop) and end the thread."""
        try:
            await self._call(self.consumer.close)
        finally:
            self._executor.shutdown(wait=True)
            if self._starts_made is not None:
                self._starts_made.close()

    # -- on the consumer thread -----------------------------------------------

    def _subscribe(self) -> None:
        if self.starts is not None:
            self.starts.warm_up([0])  # the look-up in the assignment callback: one round trip
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _poll(
        self,
        store: list[TopicPartition],
        pause: list[int],
        resume: list[int],
        budget: int,
        lag_from: Mapping[int, int] | None,
    ) -> tuple[list[Any], dict[int, int] | None]:
        consumer = self.consumer
        try:
            if store:
                self._store(store)
            if pause:
                consumer.pause([TopicPartition(self.topic, p) for p in pause])
            if resume:
                consumer.resume([TopicPartition(self.topic, p) for p in resume])
            messages = consumer.consume(budget, POLL_SECONDS)
            lag = None if lag_from is None else self._lag(lag_from)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if error is not None and hasattr(error, "fatal") and error.fatal():
                raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}") from exc
            logger.warning("Kafka: %s", exc)
            return [], None
        return list(messages), lag

    def _store(self, offsets: list[TopicPartition]) -> None:
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # A partition revoked in the meantime: its offsets are not ours to store.
            logger.debug("store_offsets %s: %s", offsets, exc)

    def _lag(self, stored: Mapping[int, int]) -> dict[int, int]:
        """High watermark minus the offset done (stored, else the position) per partition."""
        consumer = self.consumer
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            except KafkaException:
                continue
            done = stored.get(tp.partition)
            if done is None:
                (position,) = consumer.position([tp])
                done = position.offset if position.offset >= 0 else high
            lag[tp.partition] = max(int(high) - done, 0)
        return lag

    def _seek(self, targets: list[TopicPartition]) -> None:
        for tp in targets:
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                logger.warning(
                    "cannot move partition %d to offset %d: %s", tp.partition, tp.offset, exc
                )
        self._commit(targets)

    def _commit(self, offsets: list[TopicPartition], progress: bool = True) -> None:
        """Store and commit `offsets` (a background auto-commit may not come any more).

        `progress`: tell the listener (records done); not for a start position.
        """
        if not offsets:
            return
        # Stored too: librdkafka's auto-commit on revoke must not commit an older one.
        self._store(offsets)
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            committed = {tp.partition: tp.offset for tp in offsets}
            logger.warning("could not commit offsets %s: %s", offsets_text(committed), exc)
            return
        if progress:
            self.listener.committed(offsets)

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the event loop and wait for it."""
        if self._loop is None:  # pragma: no cover (callbacks only come after subscribe())
            coro.close()
            raise RuntimeError("rebalance callback before the event loop started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        self._on_loop(self.listener.assigned(numbers))
        starts = self.starts
        if starts is None or not numbers:
            return  # librdkafka assigns them, at the committed offsets or auto.offset.reset
        try:
            chosen = starts.positions(starts.uncommitted(numbers))
        except KafkaUnavailable as exc:
            logger.warning(
                "partitions %s: %s; they start from the group's committed offsets, else "
                "the earliest record",
                sorted(numbers),
                exc,
            )
            return
        assignment = [TopicPartition(self.topic, p, chosen.get(p, OFFSET_INVALID)) for p in numbers]
        try:
            consumer.incremental_assign(assignment)
        except KafkaException:  # an eager assignment strategy (-X partition.assignment.strategy)
            consumer.assign(assignment)
        if chosen:
            # Committed at once: a restart, or the next owner, resumes here.
            logger.info(
                "no committed offset for partitions %s: starting from %s at %s",
                sorted(chosen),
                starts.start.describe(),
                offsets_text(chosen),
            )
            self._commit([TopicPartition(self.topic, p, o) for p, o in chosen.items()], False)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._commit(self._on_loop(self.listener.revoked([tp.partition for tp in partitions])))

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_loop(self.listener.lost([tp.partition for tp in partitions]))


def offsets_text(offsets: Mapping[int, int]) -> str:
    """`0@12, 1@40` (partition@offset), or `nothing`."""
    if not offsets:
        return "nothing"
    return ", ".join(f"{p}@{o}" for p, o in sorted(offsets.items()))
