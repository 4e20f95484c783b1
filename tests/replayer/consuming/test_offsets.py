"""OffsetTracker: only positions below which everything finished are committable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replayer.consuming.offsets import OffsetTracker


def test_nothing_committable_before_anything_finished() -> None:
    tracker = OffsetTracker()
    assert tracker.next_committable(0) is None
    tracker.start(0, 0)
    assert tracker.next_committable(0) is None
    assert tracker.in_flight(0) == 1


def test_in_order_completion_commits_one_past_the_offset() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.start(0, offset) for offset in range(3)]
    tracker.finish(tickets[0])
    assert tracker.next_committable(0) == 1
    tracker.finish(tickets[1])
    tracker.finish(tickets[2])
    assert tracker.next_committable(0) == 3
    assert tracker.in_flight() == 0


def test_a_slow_record_holds_the_position_back_until_it_finishes() -> None:
    tracker = OffsetTracker()
    slow, *rest = [tracker.start(0, offset) for offset in range(10, 15)]
    for ticket in rest:
        tracker.finish(ticket)
    assert tracker.next_committable(0) is None
    assert tracker.in_flight(0) == 1
    tracker.finish(slow)
    assert tracker.next_committable(0) == 15


def test_middle_gap_commits_the_finished_prefix_only() -> None:
    tracker = OffsetTracker()
    t = [tracker.start(0, offset) for offset in range(5)]
    for index in (0, 1, 3, 4):
        tracker.finish(t[index])
    assert tracker.next_committable(0) == 2
    tracker.finish(t[2])
    assert tracker.next_committable(0) == 5


def test_offsets_need_not_be_contiguous() -> None:
    """Compaction and transaction markers leave holes; only started offsets count."""
    tracker = OffsetTracker()
    a = tracker.start(0, 3)
    b = tracker.start(0, 7)
    tracker.finish(b)
    assert tracker.next_committable(0) is None
    tracker.finish(a)
    assert tracker.next_committable(0) == 8


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    a = tracker.start(0, 0)
    b = tracker.start(1, 0)
    tracker.start(1, 1)
    tracker.finish(b)
    assert tracker.next_committable(0) is None
    assert tracker.next_committable(1) == 1
    tracker.finish(a)
    assert tracker.committable() == {0: 1, 1: 1}
    assert tracker.in_flight() == 1
    assert tracker.partitions() == [0, 1]


def test_finishing_twice_counts_once() -> None:
    tracker = OffsetTracker()
    a = tracker.start(0, 0)
    b = tracker.start(0, 1)
    assert tracker.finish(b)
    assert tracker.finish(b)
    assert tracker.in_flight(0) == 1
    tracker.finish(a)
    tracker.finish(a)
    assert tracker.next_committable(0) == 2
    assert tracker.in_flight(0) == 0


def test_rewind_without_forget_is_refused() -> None:
    tracker = OffsetTracker()
    tracker.start(0, 5)
    with pytest.raises(ValueError, match="offset 5 started after 5"):
        tracker.start(0, 5)


def test_forget_drops_the_partition_and_stales_its_tickets() -> None:
    """A request finishing after its partition was revoked and re-assigned says nothing."""
    tracker = OffsetTracker()
    old = tracker.start(0, 4)
    tracker.forget(0)
    assert tracker.next_committable(0) is None
    assert tracker.in_flight() == 0
    assert tracker.partitions() == []
    # Assigned again: the new generation reads offset 4 once more.
    new = tracker.start(0, 4)
    assert tracker.finish(old) is False
    assert tracker.next_committable(0) is None
    assert tracker.in_flight(0) == 1
    assert tracker.finish(new) is True
    assert tracker.next_committable(0) == 5


def test_forget_of_an_unknown_partition_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.forget(3)
    assert tracker.committable() == {}


def committable_by_definition(started: list[int], finished: set[int]) -> int | None:
    """The spec, written the slow way: the longest finished prefix of `started`."""
    position = None
    for offset in started:
        if offset not in finished:
            break
        position = offset + 1
    return position


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[tuple[str, int]]]:
    """Increasing offsets with gaps, and an interleaving of starts and finishes."""
    gaps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=40))
    offsets = []
    offset = draw(st.integers(0, 1000))
    for gap in gaps:
        offsets.append(offset)
        offset += gap
    # Each offset is finished after it is started; the order among the rest is free.
    finish_order = draw(st.permutations(range(len(offsets))))
    steps: list[tuple[str, int]] = []
    started_upto = 0
    for index in finish_order:
        while started_upto <= index:
            steps.append(("start", started_upto))
            started_upto += 1
        steps.append(("finish", index))
    return offsets, steps


@settings(max_examples=300, deadline=None)
@given(schedules(), st.data())
def test_next_committable_matches_the_definition_at_every_step(
    schedule: tuple[list[int], list[tuple[str, int]]], data: st.DataObject
) -> None:
    offsets, steps = schedule
    tracker = OffsetTracker()
    tickets = {}
    started: list[int] = []
    finished: set[int] = set()
    previous: int | None = None
    for action, index in steps:
        offset = offsets[index]
        if action == "start":
            tickets[index] = tracker.start(7, offset)
            started.append(offset)
        else:
            tracker.finish(tickets[index])
            finished.add(offset)
            if data.draw(st.booleans(), label="finish again"):
                tracker.finish(tickets[index])
        got = tracker.next_committable(7)
        assert got == committable_by_definition(started, finished)
        assert tracker.in_flight(7) == len(started) - len(finished)
        # The position never moves backwards.
        if previous is not None:
            assert got is not None and got >= previous
        previous = got
    assert tracker.next_committable(7) == offsets[-1] + 1
    assert tracker.in_flight() == 0
