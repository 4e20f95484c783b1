"""The worker's per-partition book: what it holds of each partition, and how it lets go.

For every partition it holds, the worker keeps the offsets in flight and done
(`OffsetTracker`), the records waiting in the merge for recorded-time order
(`PartitionMerger`) with their tickets, the futures of the records being sent,
the offset last stored and last committed, and whether it is paused.

At least once: an offset is stored (and auto-committed by librdkafka in the
background) only when the tracker says it and everything before it in the
partition finished. Letting go of a partition is one `forget()`, whether it
was revoked, lost, moved by a replay session's seek, or the worker stops;
`Keep` says how much survives. Use it from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import Gauge

from replayer.consuming.merge import MERGE_LIMIT_BYTES, PartitionMerger
from replayer.consuming.offsets import OffsetTracker, Ticket
from replayer.models import Record, Result

ASSIGNED = Gauge("trafficmirror_replayer_assigned_partitions", "Partitions this worker holds.")
LAG = Gauge(
    "trafficmirror_replayer_consumer_lag",
    "Records of the partition not yet replayed (high watermark minus committable offset), "
    "refreshed with the progress line.",
    ["partition"],
)

#: Records the merge into recorded-time order may hold while a partition has not
#: delivered (nor reached its end); beyond it the oldest goes out anyway.
MERGE_LIMIT = 2000


class Keep(enum.Enum):
    """What `PartitionBook.forget()` keeps of a partition besides dropping its unsent records."""

    #: Revoked or lost: another member reads the partition next.
    NOTHING = "nothing"
    #: Moved to another offset (a session's seek, an offset reset): reading restarts there.
    ASSIGNMENT = "assignment"
    #: Stopping: what is on the wire finishes, and its offsets are committed.
    POSITIONS = "positions"


@dataclass(frozen=True)
class Forgotten:
    """What `forget()` left: offsets done and not committed yet, and how many records
    were not finished (still on the wire, or dropped before they were sent)."""

    uncommitted: list[TopicPartition]
    unfinished: int


class PartitionBook:
    """Per-partition state of one worker, with one way to let go of a partition."""

    def __init__(self, topic: str, *, merge_limit: int = MERGE_LIMIT) -> None:
        self.topic = topic
        self.tracker = OffsetTracker()
        self.merger: PartitionMerger[Record] = PartitionMerger(
            limit=merge_limit, limit_bytes=MERGE_LIMIT_BYTES
        )
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.stored: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.pending: dict[int, set[asyncio.Future[Result]]] = {}
        self._tickets: dict[tuple[int, int], Ticket] = {}
        #: Cancels the records of the given partitions that wait for their due time
        #: (`Pipeline.abandon`); set once the pipeline exists.
        self.abandon: Callable[[set[int]], Any] | None = None

    def assign(self, partitions: Iterable[int]) -> None:
        """Hold `partitions` from now on; reading restarts at the committed offset."""
        partitions = list(partitions)
        for partition in partitions:
            # No earlier state applies to the committed offset the group hands out.
            self.tracker.forget(partition)
            self.stored.pop(partition, None)
            self.paused.discard(partition)
            self.assigned.add(partition)
        self.merger.track(partitions)
        ASSIGNED.set(len(self.assigned))

    def admit(self, message: Any) -> bool:
        """Track a fetched record and hand it to the merge; False if its offset went back.

        A record of a partition not held (fetched before a revoke) is ignored:
        the next owner reads it. After False, `forget()` the partition with
        `Keep.ASSIGNMENT` and admit the record again.
        """
        partition = message.partition()
        if partition not in self.assigned:
            return True
        offset = message.offset()
        try:
            ticket = self.tracker.start(partition, offset)
        except ValueError:
            return False
        record = Record.from_message(message)
        self._tickets[(partition, offset)] = ticket
        self.merger.add(partition, record.timestamp_ms or 0, record, record.size)
        return True

    def release(self, room: int, handle: Callable[[Record], asyncio.Future[Result]]) -> None:
        """Give `handle` up to `room` records the merge lets go, and book their outcome."""
        for record in self.merger.ready(room):
            ticket = self._tickets.pop((record.partition, record.offset), None)
            if ticket is None or record.partition not in self.assigned:
                continue  # its partition was revoked or moved meanwhile
            future = handle(record)
            pending = self.pending.setdefault(record.partition, set())
            pending.add(future)
            future.add_done_callback(partial(self._finished, ticket, pending))

    def _finished(
        self,
        ticket: Ticket,
        pending: set[asyncio.Future[Result]],
        future: asyncio.Future[Result],
    ) -> None:
        pending.discard(future)
        if not future.cancelled():  # cancelled = not handled: it is read again later
            self.tracker.finish(ticket)

    def to_store(self) -> list[TopicPartition]:
        """Offsets that became committable since the last call (they count as stored)."""
        store = []
        for partition in sorted(self.assigned):
            position = self.tracker.next_committable(partition)
            if position is not None and self.stored.get(partition) != position:
                store.append(TopicPartition(self.topic, partition, position))
                self.stored[partition] = position
        return store

    def uncommitted(self, partitions: Iterable[int]) -> list[TopicPartition]:
        """Committable positions of `partitions` that differ from the last commit."""
        offsets = []
        for partition in sorted(partitions):
            position = self.tracker.next_committable(partition)
            if position is not None and self.committed.get(partition) != position:
                offsets.append(TopicPartition(self.topic, partition, position))
        return offsets

    def note_committed(self, offsets: Iterable[TopicPartition]) -> None:
        """Offsets the consumer committed (on its thread, while the loop waits for it)."""
        for tp in offsets:
            self.committed[tp.partition] = tp.offset

    def record_lag(self, lag: dict[int, int]) -> None:
        """Publish the lag of the partitions still held."""
        for partition, value in lag.items():
            if partition in self.assigned:
                LAG.labels(str(partition)).set(value)

    async def forget(
        self, partitions: Collection[int], keep: Keep, grace: float = 0.0
    ) -> Forgotten:
        """Let go of `partitions`, in this order, keeping what `keep` says.

        1. Records not sent yet (held by the merge, or waiting for their due
           time) are dropped: whoever reads their offsets next replays them.
        2. Requests on the wire get up to `grace` seconds to finish, so that
           their offsets still count.
        3. What is done and not committed is returned (to commit before a
           revoked partition goes), with how many records are unfinished.
        4. Unless `keep` is `POSITIONS`: the offsets' state goes (tracker,
           stored offset, futures; late outcomes no longer count). With
           `ASSIGNMENT` the merge waits for the partitions again; with
           `NOTHING` they are no longer held.
        """
        partitions = sorted(partitions)
        for record in self.merger.forget(partitions):
            self._tickets.pop((record.partition, record.offset), None)
        if self.abandon is not None:
            self.abandon(set(partitions))
        waiting = [f for p in partitions for f in self.pending.get(p, ())]
        if waiting and grace > 0:
            await asyncio.wait(waiting, timeout=grace)
        left = Forgotten(
            self.uncommitted(partitions), sum(self.tracker.in_flight(p) for p in partitions)
        )
        if keep is Keep.POSITIONS:
            return left
        for partition in partitions:
            self.tracker.forget(partition)
            self.stored.pop(partition, None)
            self.pending.pop(partition, None)
        if keep is Keep.ASSIGNMENT:
            self.merger.track(partitions)
            return left
        for partition in partitions:
            self.assigned.discard(partition)
            self.paused.discard(partition)
            try:
                LAG.remove(str(partition))
            except KeyError:
                pass
        ASSIGNED.set(len(self.assigned))
        return left

    def close(self) -> None:
        """The worker left the group: it holds nothing."""
        ASSIGNED.set(0)
