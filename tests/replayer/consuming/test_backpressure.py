"""Backpressure: read what the in-flight bound leaves room for; pause for a stuck shadow."""

from __future__ import annotations

from replayer.consuming.backpressure import Backpressure, Turn


def test_the_budget_is_the_room_left_at_most_a_batch_and_at_least_one() -> None:
    pressure = Backpressure(100, batch=30)
    assert pressure.turn(0, 0.0, holding=False, paused=False) == Turn(100, 30, False, False)
    assert pressure.turn(90, 0.0, holding=False, paused=False) == Turn(10, 10, False, False)
    # No room: wait for a request to finish rather than poll (nothing is paused yet).
    assert pressure.turn(100, 0.0, holding=False, paused=False) == Turn(0, 1, False, True)


def test_partitions_pause_only_after_the_bound_stayed_reached_for_a_while() -> None:
    pressure = Backpressure(64, pause_after=1.0)
    assert not pressure.turn(64, 10.0, holding=False, paused=False).pause
    assert not pressure.turn(70, 10.9, holding=False, paused=False).pause
    stuck = pressure.turn(64, 11.0, holding=False, paused=False)
    assert stuck.pause and not stuck.wait and stuck.budget == 1  # still polled
    # One request finished: room again, and the clock starts over.
    assert not pressure.turn(63, 11.5, holding=False, paused=True).pause
    assert not pressure.turn(64, 11.6, holding=False, paused=True).pause
    # Paused partitions are served by polling, not by waiting.
    assert not pressure.turn(64, 11.7, holding=False, paused=True).wait
    assert pressure.turn(64, 12.6, holding=False, paused=True).pause


def test_the_guard_holding_back_pauses_at_once() -> None:
    pressure = Backpressure(64)
    turn = pressure.turn(3, 0.0, holding=True, paused=False)
    assert turn.pause and not turn.wait and turn.budget == 61


def test_pause_what_is_not_paused_and_resume_once_half_the_bound_is_free() -> None:
    pressure = Backpressure(64)
    assigned = {0, 1, 2}
    assert pressure.changes(assigned, set(), 64, pause=True) == ([0, 1, 2], [])
    assert pressure.changes(assigned, {1}, 64, pause=True) == ([0, 2], [])
    assert pressure.changes(assigned, {0, 1, 2}, 33, pause=False) == ([], [])
    assert pressure.changes(assigned, {0, 1, 2}, 32, pause=False) == ([], [0, 1, 2])
    assert pressure.changes(assigned, set(), 0, pause=False) == ([], [])
