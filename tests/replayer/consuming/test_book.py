"""PartitionBook: offsets stored only behind finished prefixes, and one forget() for every exit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from replayer.consuming.book import Keep, PartitionBook
from replayer.models import Record, Result
from tests.replayer.consuming.fakeconsumer import TOPIC, FakeMessage, eof


def tp(partition: int, offset: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition, offset)


def assigned_gauge() -> float | None:
    return REGISTRY.get_sample_value("trafficmirror_replayer_assigned_partitions")


class Handler:
    """Stands for `Pipeline.handle`: a future per record, finished when the test says."""

    def __init__(self) -> None:
        self.futures: dict[tuple[int, int], asyncio.Future[Result]] = {}

    def __call__(self, record: Record) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.futures[(record.partition, record.offset)] = future
        return future

    def finish(self, partition: int, offset: int) -> None:
        future = self.futures[(partition, offset)]
        future.set_result(Result(Record(TOPIC, partition, offset, None, None), "sent"))


def run(test: Callable[[], object]) -> None:
    async def main() -> None:
        result = test()
        if asyncio.iscoroutine(result):
            await result
        await asyncio.sleep(0)  # done callbacks

    asyncio.run(main())


def fill(book: PartitionBook, partition: int, offsets: range) -> None:
    for offset in offsets:
        assert book.admit(FakeMessage(partition, offset))
    book.merger.end(partition)


def test_an_offset_is_stored_once_it_and_every_earlier_one_finished() -> None:
    book, handle = PartitionBook(TOPIC), Handler()

    async def test() -> None:
        book.assign([0])
        assert assigned_gauge() == 1
        fill(book, 0, range(10, 13))
        book.release(10, handle)
        assert sorted(handle.futures) == [(0, 10), (0, 11), (0, 12)]
        handle.finish(0, 11)
        await asyncio.sleep(0)
        assert book.to_store() == []  # 10 still in flight holds 11 back
        handle.finish(0, 10)
        await asyncio.sleep(0)
        assert book.to_store() == [tp(0, 12)]
        assert book.to_store() == []  # stored already
        assert book.uncommitted([0]) == [tp(0, 12)]
        book.note_committed([tp(0, 12)])
        assert book.uncommitted([0]) == []
        assert book.stored == {0: 12} and book.committed == {0: 12}

    run(test)


def test_release_hands_out_no_more_than_the_room_and_admit_ignores_what_is_not_held() -> None:
    book, handle = PartitionBook(TOPIC), Handler()

    async def test() -> None:
        book.assign([0, 1])
        assert book.admit(FakeMessage(5, 1))  # fetched before a revoke: the next owner's
        for n in range(4):
            assert book.admit(FakeMessage(n % 2, n, timestamp_ms=1000 + n))
        book.merger.end(0)
        book.merger.end(1)
        book.release(3, handle)
        assert list(handle.futures) == [(0, 0), (1, 1), (0, 2)]  # recorded-time order
        assert book.merger.held == 1
        assert book.pending[0] == {handle.futures[(0, 0)], handle.futures[(0, 2)]}

    run(test)


def test_an_offset_going_back_is_refused_until_the_partition_is_forgotten() -> None:
    book, handle = PartitionBook(TOPIC), Handler()

    async def test() -> None:
        book.assign([0])
        fill(book, 0, range(100, 103))
        book.release(1, handle)  # 100 in flight, 101 and 102 held by the merge
        handle.finish(0, 100)
        await asyncio.sleep(0)
        assert book.to_store() == [tp(0, 101)]
        assert not book.admit(FakeMessage(0, 50))
        left = await book.forget([0], Keep.ASSIGNMENT)
        assert left.unfinished == 2 and book.merger.held == 0  # 101 and 102, never sent
        assert book.assigned == {0} and book.stored == {}
        assert book.admit(FakeMessage(0, 50))
        book.release(10, handle)
        assert (0, 50) in handle.futures
        handle.finish(0, 50)
        await asyncio.sleep(0)
        assert book.to_store() == [tp(0, 51)]

    run(test)


def test_forget_when_revoked_drops_the_unsent_waits_for_the_sent_and_lets_go() -> None:
    book, handle = PartitionBook(TOPIC), Handler()
    abandoned: list[set[int]] = []
    book.abandon = abandoned.append

    async def test() -> None:
        book.assign([0, 1])
        book.paused.update({0, 1})
        fill(book, 0, range(0, 4))
        fill(book, 1, range(0, 2))
        book.release(3, handle)  # 0@0, 0@1, 0@2 sent (partition 1 is later in time)
        asyncio.get_running_loop().call_later(0.05, handle.finish, 0, 0)
        left = await book.forget([0], Keep.NOTHING, grace=0.2)
        # 0@0 finished within the grace; 0@1 and 0@2 did not; 0@3 was never sent.
        assert left.uncommitted == [tp(0, 1)] and left.unfinished == 3
        assert abandoned == [{0}]
        assert book.assigned == {1} and book.paused == {1} and 0 not in book.pending
        assert assigned_gauge() == 1
        handle.finish(0, 1)  # too late: another member owns partition 0 now
        await asyncio.sleep(0)
        assert book.tracker.next_committable(0) is None
        book.release(10, handle)
        assert sorted(handle.futures) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]

    run(test)


def test_forget_when_stopping_keeps_the_positions_of_what_is_on_the_wire() -> None:
    book, handle = PartitionBook(TOPIC), Handler()

    async def test() -> None:
        book.assign([0])
        fill(book, 0, range(0, 5))
        book.release(2, handle)
        left = await book.forget(sorted(book.assigned), Keep.POSITIONS)
        assert left.unfinished == 5 and book.merger.held == 0  # 2 on the wire, 3 dropped
        handle.finish(0, 0)
        handle.finish(0, 1)
        await asyncio.sleep(0)
        # The final commit: the dropped ones hold the position back for the next owner.
        assert book.uncommitted(book.assigned) == [tp(0, 2)]
        assert book.assigned == {0}

    run(test)


def test_a_cancelled_record_does_not_count_as_done_and_eof_unblocks_the_merge() -> None:
    book, handle = PartitionBook(TOPIC), Handler()

    async def test() -> None:
        book.assign([0, 1])
        assert book.admit(FakeMessage(0, 0))
        book.release(10, handle)
        assert not handle.futures  # partition 1 might still have something earlier
        book.merger.end(eof(1, 0).partition())
        book.release(10, handle)
        handle.futures[(0, 0)].cancel()  # the sender closed before it finished
        await asyncio.sleep(0)
        assert book.to_store() == [] and book.pending[0] == set()

    run(test)
