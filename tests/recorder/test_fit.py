"""Cutting bodies so an event fits in one Kafka message: the fair share of the room left."""

from __future__ import annotations

from typing import Any

import pytest

from recorder.fit import MESSAGE_MARGIN, body_cap, fair_cap, fits


@pytest.mark.parametrize(
    ("sizes", "budget", "cap"),
    [
        ([100, 100], 1000, 100),  # both fit whole
        ([100, 900], 600, 500),  # the small one whole, the large one gets what is left
        ([800, 900], 600, 300),  # neither fits: an equal share each
        ([800], 600, 600),
        ([], 600, 0),
        ([100, 100], 0, 0),
        ([100, 100], -5, 0),
    ],
)
def test_fair_cap(sizes: list[int], budget: int, cap: int) -> None:
    assert fair_cap(sizes, budget) == cap
    assert sum(min(s, cap) for s in sizes) <= max(budget, 0)


def _event(request_body: int, response_body: int | None) -> dict[str, Any]:
    response = None if response_body is None else {"message": {"body": b"r" * response_body}}
    return {"request": {"body": b"q" * request_body}, "response": response}


def test_body_cap_leaves_room_for_everything_else() -> None:
    limit = 100_000
    event = _event(60_000, 70_000)
    overhead = 500  # encoded bytes that are not bodies
    cap = body_cap(event, 130_000 + overhead, limit)
    assert 2 * cap + overhead <= limit - MESSAGE_MARGIN
    assert cap == (limit - MESSAGE_MARGIN - overhead) // 2
    # Without a response, the request body has it all.
    assert body_cap(_event(120_000, None), 120_000 + overhead, limit) == (
        limit - MESSAGE_MARGIN - overhead
    )


def test_fits_keeps_the_margin() -> None:
    assert fits(1_000_000 - MESSAGE_MARGIN, 1_000_000)
    assert not fits(1_000_000 - MESSAGE_MARGIN + 1, 1_000_000)
