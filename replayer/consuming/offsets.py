"""Which offsets of each partition may be committed, when records finish out of order.

Records of one partition are replayed concurrently (different recorded
connections run side by side), so they finish in any order. Kafka only stores
one position per partition, meaning "everything before this offset is done".
`OffsetTracker` remembers the offsets a consumer has started, in the order they
were read, and which of them have finished; the committable position is one
past the longest finished prefix. A record that is still in flight holds the
position back, so a crash replays it (and whatever finished after it) instead
of losing it: at least once, never at most once.

Offsets need not be contiguous (compaction, transaction markers); only offsets
that were started count. When a partition is revoked, `forget()` drops its
state; tickets handed out before that become stale, so a request that finishes
after the partition came back (a new generation) cannot mark the new
generation's offsets as done.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class Ticket(NamedTuple):
    """Proof that an offset was started; hand it back to `OffsetTracker.finish()`."""

    partition: int
    offset: int
    generation: int


class _Partition:
    __slots__ = ("generation", "started", "pending", "position", "last_started")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        # Started offsets not yet part of the committable prefix, oldest first.
        self.started: deque[int] = deque()
        # The offsets of `started` that have not finished.
        self.pending: set[int] = set()
        self.position: int | None = None
        self.last_started = -1


class OffsetTracker:
    """Per-partition bookkeeping of in-flight and finished offsets.

    Not thread-safe: use it from one thread (the replayer's event loop).
    """

    def __init__(self) -> None:
        self._partitions: dict[int, _Partition] = {}
        self._generation = 0

    def _state(self, partition: int) -> _Partition:
        state = self._partitions.get(partition)
        if state is None:
            self._generation += 1
            state = _Partition(self._generation)
            self._partitions[partition] = state
        return state

    def start(self, partition: int, offset: int) -> Ticket:
        """Record that `offset` of `partition` is being worked on.

        Offsets of one partition must be started in increasing order (Kafka
        delivers them so); a rewind without `forget()` first is a bug in the
        caller and raises ValueError.
        """
        state = self._state(partition)
        if offset <= state.last_started:
            raise ValueError(
                f"partition {partition}: offset {offset} started after {state.last_started}"
            )
        state.last_started = offset
        state.started.append(offset)
        state.pending.add(offset)
        return Ticket(partition, offset, state.generation)

    def finish(self, ticket: Ticket) -> bool:
        """Record that the ticket's offset is done; False if the ticket is stale.

        A ticket is stale when its partition was forgotten since it was issued
        (revoked, maybe assigned again): its completion no longer says anything
        about what this consumer may commit.
        """
        state = self._partitions.get(ticket.partition)
        if state is None or state.generation != ticket.generation:
            return False
        pending = state.pending
        if ticket.offset not in pending:
            return True  # finished twice: the first time counted
        pending.discard(ticket.offset)
        started = state.started
        # Everything at the head that has finished joins the committable prefix.
        while started and started[0] not in pending:
            state.position = started.popleft() + 1
        return True

    def next_committable(self, partition: int) -> int | None:
        """The offset to commit for `partition`, or None if nothing may be committed yet.

        It is one past the highest offset that, together with every offset
        started before it, has finished (Kafka commits name the next record to
        read). It never goes backwards while the partition is tracked.
        """
        state = self._partitions.get(partition)
        return None if state is None else state.position

    def committable(self) -> dict[int, int]:
        """`next_committable()` of every tracked partition that has one."""
        return {
            partition: state.position
            for partition, state in self._partitions.items()
            if state.position is not None
        }

    def in_flight(self, partition: int | None = None) -> int:
        """Started offsets not yet finished, in one partition or in all."""
        if partition is not None:
            state = self._partitions.get(partition)
            return 0 if state is None else len(state.pending)
        return sum(len(s.pending) for s in self._partitions.values())

    def forget(self, partition: int) -> None:
        """Drop the partition's state (it was revoked or lost); its tickets become stale."""
        self._partitions.pop(partition, None)

    def partitions(self) -> list[int]:
        """Partitions with state, sorted."""
        return sorted(self._partitions)
