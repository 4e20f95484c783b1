"""Backpressure for the group worker: how much to read each turn, when to pause, when to resume.

The worker holds at most `limit` records (read and not handled: in the merge,
waiting for their due time, or sending; the bound comes from
`replayer.assembly`). Each loop turn asks the consumer for as many records as
there is room for. When the bound stays reached with no request finishing for
`PAUSE_AFTER` seconds, or while the error-rate guard backs off from a failing
shadow (`replayer.sending.guard`), the assigned partitions are paused: what is
in flight waits, nothing new is read. They resume once half of the bound is
free. The consumer is polled all the while, so the group never sees a stalled
member.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

#: Seconds the in-flight bound may stay reached, with no request finishing, before
#: the partitions are paused. While requests finish, the consumer is asked for
#: as many records as finished (librdkafka's bounded prefetch queue holds the
#: rest), so polling goes on. Pausing purges that queue and a resume takes about
#: a second to fetch again, so pausing on every saturation would starve a fast
#: shadow. Pausing is for a stuck shadow: polling then goes on with nothing to
#: deliver, which serves rebalances and keeps the member alive.
PAUSE_AFTER = 1.0
#: Records asked of the consumer in one turn at most.
BATCH = 500


@dataclass(frozen=True)
class Turn:
    """What one loop turn may do.

    `room`: records the bound leaves room for (0 or less: none). `budget`:
    records to ask the consumer for when polling (at least 1: a poll also serves
    rebalances). `pause`: pause the partitions. `wait`: no room and no reason to
    pause yet: wait for a request to finish rather than poll.
    """

    room: int
    budget: int
    pause: bool
    wait: bool


class Backpressure:
    """Turns the in-flight count into read budgets and pause/resume decisions."""

    def __init__(self, limit: int, *, pause_after: float = PAUSE_AFTER, batch: int = BATCH) -> None:
        self.limit = limit
        self.pause_after = pause_after
        self.batch = batch
        self._saturated_since: float | None = None

    def turn(self, in_flight: int, now: float, *, holding: bool, paused: bool) -> Turn:
        """Plan a turn with `in_flight` records held at monotonic time `now`.

        `holding`: the shadow's guard backs off. `paused`: some partitions are paused.
        """
        room = self.limit - in_flight
        # The merge's records are bounded on their own (MERGE_LIMIT): they wait
        # for more reading, so they must not stop it; they count in `in_flight`
        # only once handed to the pipeline.
        budget = min(self.batch, room)
        if budget > 0:
            self._saturated_since = None
        elif self._saturated_since is None:
            self._saturated_since = now
        since = self._saturated_since
        pause = (since is not None and now - since >= self.pause_after) or holding
        wait = budget <= 0 and not pause and not paused
        return Turn(room=room, budget=max(budget, 1), pause=pause, wait=wait)

    def changes(
        self, assigned: Set[int], paused: Set[int], in_flight: int, *, pause: bool
    ) -> tuple[list[int], list[int]]:
        """The partitions to pause and to resume now, given what is assigned and paused."""
        if pause:
            return sorted(assigned - paused), []
        if paused and in_flight <= self.limit // 2:
            return [], sorted(paused & assigned)
        return [], []
