"""Merging partitions into recorded-time order, with a bound on what is held."""

from __future__ import annotations

from replayer.consuming.merge import PartitionMerger


def test_a_record_waits_until_every_partition_with_data_is_past_it() -> None:
    merger: PartitionMerger[str] = PartitionMerger(limit=100)
    merger.track([0, 1])
    merger.add(0, 10, "a")
    merger.add(0, 30, "c")
    assert merger.ready() == []  # partition 1 may still hold something earlier
    merger.add(1, 20, "b")
    assert merger.ready() == ["a", "b"]  # "c" waits for partition 1's next
    merger.end(1)
    assert merger.ready() == ["c"]
    assert merger.held == 0


def test_an_ended_partition_holds_nothing_back_until_it_has_data_again() -> None:
    merger: PartitionMerger[str] = PartitionMerger(limit=100)
    merger.track([0, 1])
    merger.end(1)
    merger.add(0, 5, "x")
    assert merger.ready() == ["x"]
    merger.add(1, 7, "y")  # new data after the end: partition 1 is live again
    merger.add(0, 9, "z")
    assert merger.ready() == ["y"]


def test_room_bounds_what_goes_out_and_limit_bounds_what_is_held() -> None:
    merger: PartitionMerger[int] = PartitionMerger(limit=3)
    merger.track([0, 1])
    for n in range(5):
        merger.add(0, n, n)
    # Partition 1 never delivers: beyond the limit the oldest go out anyway.
    assert merger.ready(room=1) == [0]
    assert merger.ready() == [1]
    assert merger.held == 3
    assert merger.forced == 2
    assert merger.ready(room=0) == []


def test_forget_drops_a_revoked_partition_and_flush_empties_in_order() -> None:
    merger: PartitionMerger[str] = PartitionMerger(limit=100)
    merger.track([0, 1, 2])
    merger.add(0, 3, "p0")
    merger.add(1, 1, "p1")
    assert merger.forget([1]) == ["p1"]
    merger.add(2, 2, "p2")
    assert merger.flush() == ["p2", "p0"]
    assert merger.partitions == {0, 2}


def test_limit_bytes_bounds_what_large_records_may_hold() -> None:
    merger: PartitionMerger[int] = PartitionMerger(limit=1000, limit_bytes=2_500)
    merger.track([0, 1])
    for n in range(5):
        merger.add(0, n, n, size=1_000)
    assert merger.held_bytes == 5_000
    # Partition 1 never delivers: past 2,500 bytes the oldest go out anyway,
    # although far fewer records than `limit` are held.
    assert merger.ready() == [0, 1, 2]
    assert merger.held == 2
    assert merger.held_bytes == 2_000
    assert merger.ready() == []
    assert merger.forget([0]) == [3, 4]
    assert merger.held_bytes == 0
