"""Merge the records of several partitions into recorded-time order.

Kafka hands a consumer its partitions' records in fetch-sized chunks, one
partition after another; replayed in that order, partition 0's minute would go
out before partition 1's, and the first record seen would anchor the virtual
clock too late. `PartitionMerger` holds each record until every partition that
still has data has a buffered record at or after it, or has reached its end
(end of range, or end of partition for now: librdkafka's partition EOF), and
then hands records out smallest recorded time first.

The key is the Kafka timestamp (the recorder sets it to the request start), so
records are merged without decoding. Within a partition the order is kept as
read: the scheduler's heap (`replayer.pacing.clock`) sorts the small disorder of
overlapping connections by their exact recorded time.

A partition that is assigned but delivers nothing (and no EOF) would hold
everything back; `limit` bounds that: beyond `limit` held records the oldest
one goes out anyway, so the merger never stalls the consumer, and the order is
then only as good as the data at hand. `limit_bytes` does the same by the
records' size, so large events cannot make the held records' memory grow to
`limit` times the largest event. `ready(room)` hands out at most `room`
records, so the caller's in-flight bound holds: the rest waits here.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Default byte bound of what the merge holds (see `PartitionMerger.limit_bytes`).
MERGE_LIMIT_BYTES = 8 * 1024 * 1024


class PartitionMerger(Generic[T]):
    """Per-partition buffers released in timestamp order (see the module docstring)."""

    def __init__(self, limit: int, limit_bytes: int | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._bytes = 0
        self._buffers: dict[int, deque[tuple[int, T, int]]] = {}
        self._ended: set[int] = set()
        self._held = 0
        self.forced = 0  # records released early because of `limit`

    @property
    def held(self) -> int:
        """Records buffered and not handed out yet."""
        return self._held

    @property
    def partitions(self) -> set[int]:
        return set(self._buffers)

    def track(self, partitions: Iterable[int]) -> None:
        """Expect records from `partitions` (they hold others back until they deliver or end)."""
        for partition in partitions:
            self._buffers.setdefault(partition, deque())
            self._ended.discard(partition)

    @property
    def held_bytes(self) -> int:
        """Sum of the `size` of the records held."""
        return self._bytes

    def add(self, partition: int, timestamp: int, item: T, size: int = 0) -> None:
        """Buffer `item` of `partition`, recorded at `timestamp` (any unit, one for all).

        `size` (bytes) counts against `limit_bytes`.
        """
        buffer = self._buffers.get(partition)
        if buffer is None:
            buffer = self._buffers[partition] = deque()
        buffer.append((timestamp, item, size))
        self._ended.discard(partition)
        self._held += 1
        self._bytes += size

    def end(self, partition: int) -> None:
        """`partition` has nothing more for now: it no longer holds others back."""
        if partition in self._buffers:
            self._ended.add(partition)

    def forget(self, partitions: Iterable[int]) -> list[T]:
        """Stop tracking `partitions` (revoked); returns their buffered items, not released."""
        dropped: list[T] = []
        for partition in partitions:
            buffer = self._buffers.pop(partition, None)
            self._ended.discard(partition)
            if buffer:
                dropped.extend(item for _, item, _ in buffer)
                self._held -= len(buffer)
                self._bytes -= sum(size for _, _, size in buffer)
        return dropped

    def ready(self, room: int | None = None) -> list[T]:
        """Hand out, in timestamp order, records no tracked partition can still precede.

        At most `room` of them (None: no bound); the others stay held.
        """
        out: list[T] = []
        if room is not None and room <= 0:
            return out
        buffers = self._buffers
        blocking = sum(1 for p, buffer in buffers.items() if not buffer and p not in self._ended)
        heads = [(buffer[0][0], p) for p, buffer in buffers.items() if buffer]
        heapq.heapify(heads)
        while heads and (room is None or len(out) < room):
            if blocking and not self._over_limit():
                break
            if blocking:
                self.forced += 1
            _, partition = heapq.heappop(heads)
            buffer = buffers[partition]
            _, item, size = buffer.popleft()
            out.append(item)
            self._held -= 1
            self._bytes -= size
            if buffer:
                heapq.heappush(heads, (buffer[0][0], partition))
            elif partition not in self._ended:
                blocking += 1
        return out

    def _over_limit(self) -> bool:
        if self._held > self.limit:
            return True
        return self.limit_bytes is not None and self._bytes > self.limit_bytes

    def flush(self, room: int | None = None) -> list[T]:
        """What is held (up to `room`), in timestamp order, not waiting for other partitions."""
        for partition in self._buffers:
            self._ended.add(partition)
        return self.ready(room)
