"""The virtual clock (time warp) and the scheduler that sends each exchange when it is due.

An exchange recorded at `recorded_at` is due at `start + (recorded_at - anchor)
/ speed` on the wall clock (`time.time()`), with idle stretches longer than
`max_gap` cut to `max_gap` first. `Pace` holds those settings plus a rate
ceiling; `VirtualClock` is the arithmetic (pure, tested with fake time);
`Scheduler` holds the exchanges not yet due in a heap ordered by recorded
time, and one task releases each at its due moment, never early, and not
faster than the rate ceiling (`replayer.pacing.ratelimit.TokenBucket`: delays,
never drops). A pace can change at any time (`Scheduler.set_pace`), and in a
group each worker takes its share of the rate (`Scheduler.set_share`).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from replayer.pacing.ratelimit import TokenBucket

#: Seconds before the due time at which the timer sleep ends and the loop is polled.
#: asyncio's timers fire up to about a millisecond late (epoll's timeout is in
#: whole milliseconds, rounded up), so the scheduler sleeps until this long before
#: the due time, then yields to the loop (`sleep(0)`) until it is reached: I/O is
#: served while it waits. A longer spin is more punctual and costs more CPU (the
#: measured trade-off is in the docs).
SPIN_SECONDS = 0.0005


#: Called with the exchange's due time (`time.time()` seconds), or None when it
#: has none (speed "max"), at the moment it may be sent.
Release = Callable[[float | None], None]


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast to replay: time warp, rate ceiling, idle compression, anchor."""

    speed: float | None = 1.0  # None = as fast as possible ("max"); 2.0 = twice as fast
    rate: float | None = None  # requests/s ceiling; None = no limit (a Scheduler applies its
    #                            `share` of it: a worker's share of the partitions, else all)
    max_gap: float | None = None  # seconds; recorded idle stretches longer than this are cut
    anchor_us: int | None = None  # recorded time (µs since epoch) due at start_at; None = first
    start_at: float | None = None  # wall clock when anchor_us is due; None = when first scheduled

    def __post_init__(self) -> None:
        if self.speed is not None and not self.speed > 0:
            raise ValueError("speed must be above 0 (or None for as fast as possible)")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be above 0 (or None for no limit)")
        if self.max_gap is not None and not self.max_gap >= 0:
            raise ValueError("max_gap must be 0 or more seconds")

    @property
    def timed(self) -> bool:
        """True when exchanges wait for a due time (a speed, not "max")."""
        return self.speed is not None


class VirtualClock:
    """Due times of recorded exchanges under a `Pace`; all times are passed in (testable).

    Internally recorded times are mapped to a "compressed" timeline (gaps over
    `max_gap` cut), and the clock is the line through (`_base_c`, `_base_wall`)
    with slope `speed`.
    """

    def __init__(self, pace: Pace) -> None:
        self._pace = pace
        self._started = False
        self._base_c = 0.0  # compressed recorded µs due at _base_wall
        self._base_wall = 0.0
        self._last_us: int | None = None  # last released recorded time
        self._last_c = 0.0  # its compressed value
        if pace.anchor_us is not None and pace.start_at is not None:
            self._start(pace.anchor_us, pace.start_at)

    @property
    def pace(self) -> Pace:
        return self._pace

    def _start(self, anchor_us: int, wall: float) -> None:
        self._started = True
        self._base_c = float(anchor_us)
        self._base_wall = wall
        self._last_us = anchor_us
        self._last_c = float(anchor_us)

    def _compressed(self, recorded_us: int) -> float:
        if self._last_us is None:
            return float(recorded_us)
        gap = recorded_us - self._last_us
        max_gap = self._pace.max_gap
        if max_gap is not None and gap > max_gap * 1e6:
            gap = round(max_gap * 1e6)
        return self._last_c + gap

    def due(self, recorded_us: int, now: float) -> float | None:
        """Wall time at which `recorded_us` is due; None with speed "max" (due at once).

        The first call fixes the anchor and start, unless the pace gave them.
        """
        speed = self._pace.speed
        if speed is None:
            return None
        if not self._started:
            anchor = self._pace.anchor_us if self._pace.anchor_us is not None else recorded_us
            start = self._pace.start_at if self._pace.start_at is not None else now
            self._start(anchor, start)
        return self._base_wall + (self._compressed(recorded_us) - self._base_c) / 1e6 / speed

    def released(self, recorded_us: int) -> None:
        """`recorded_us` was released: later gaps are measured from it."""
        if self._last_us is None or recorded_us >= self._last_us:
            self._last_c = self._compressed(recorded_us)
            self._last_us = recorded_us

    def position(self, now: float) -> float | None:
        """Compressed recorded µs due at `now`, or None before the clock started."""
        if not self._started:
            return None
        speed = self._pace.speed
        if speed is None or now <= self._base_wall:
            return max(self._base_c, self._last_c) if speed is None else self._base_c
        return self._base_c + (now - self._base_wall) * speed * 1e6

    def recorded_position(self, now: float) -> float | None:
        """Recorded µs the replay has reached at `now` (idle stretches cut by `max_gap`
        count as they were recorded), or None before the clock started."""
        position = self.position(now)
        if position is None:
            return None
        if self._last_us is None:
            return position
        return position + (self._last_us - self._last_c)

    def set_pace(self, pace: Pace, now: float) -> None:
        """Apply `pace` from `now` on (see the module docstring for anchors)."""
        if pace.anchor_us is not None:
            self._pace = pace
            self._started = False
            self._last_us = None
            self._start(pace.anchor_us, pace.start_at if pace.start_at is not None else now)
            return
        if self._started:
            # Continue from the current virtual position: what was due stays due,
            # nothing not yet due jumps into the past.
            position = self.position(now)
            waiting_to_start = self._pace.speed is not None and now < self._base_wall
            if position is not None and not waiting_to_start:
                self._base_c, self._base_wall = position, now
        self._pace = pace


@dataclass(slots=True, eq=False)
class Scheduled:
    """An exchange waiting in the scheduler (see `Scheduler.schedule`)."""

    recorded_us: int
    seq: int
    release: Release | None
    partition: int | None = None
    on_cancel: Callable[[], None] | None = None
    since: float = 0.0  # time.time() when scheduled

    def __lt__(self, other: Scheduled) -> bool:
        return (self.recorded_us, self.seq) < (other.recorded_us, other.seq)

    @property
    def cancelled(self) -> bool:
        return self.release is None

    def cancel(self) -> None:
        self.release = None
        on_cancel, self.on_cancel = self.on_cancel, None
        if on_cancel is not None:
            on_cancel()


class Scheduler:
    """Releases scheduled exchanges in recorded-time order at their due time and rate.

    Use it from one event loop. `schedule()` never blocks; `waiting` counts
    exchanges scheduled and not yet released (they count as in flight for
    backpressure). `aclose()` cancels what is left.

    `set_pace()` applies at once to everything not yet released. A new pace
    without `anchor_us` continues the virtual clock from where it stands (no
    jump, no burst); one with `anchor_us` and `start_at` is taken literally,
    which is how workers sharing a session compute the same due times.
    `max_gap` cuts the gaps between the exchanges this scheduler releases (and
    the one from an explicit anchor to the first exchange): in a group, each
    worker cuts the gaps of its own partitions' stream. `set_share(fraction)`
    scales `pace.rate` for this process (its share of the topic's partitions),
    so the group as a whole holds the rate; `pace` keeps the group-wide value.
    """

    def __init__(self, pace: Pace | None = None, *, share: float = 1.0) -> None:
        self._pace = pace or Pace()
        self._clock = VirtualClock(self._pace)
        self._share = share
        self._bucket: TokenBucket | None = None
        self._heap: list[Scheduled] = []
        self._seq = 0
        self._waiting = 0
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._apply_rate(time.time())

    # -- settings ---------------------------------------------------------------

    @property
    def pace(self) -> Pace:
        """The pace as last set (the group-wide rate, before this process's share)."""
        return self._pace

    def set_pace(self, pace: Pace) -> None:
        """Apply `pace` at once to everything not yet released."""
        now = time.time()
        self._pace = pace
        self._clock.set_pace(pace, now)
        self._apply_rate(now)
        self._poke()

    @property
    def share(self) -> float:
        """This process's fraction of `pace.rate` (its share of the partitions)."""
        return self._share

    def set_share(self, share: float) -> None:
        """Take `share` (0..1) of the rate from now on; 0 holds everything back."""
        if not 0 <= share <= 1:
            raise ValueError("share must be between 0 and 1")
        self._share = share
        self._apply_rate(time.time())
        self._poke()

    @property
    def rate(self) -> float | None:
        """The requests/s ceiling this process applies, or None."""
        if self._pace.rate is None:
            return None
        return self._pace.rate * self._share

    def _apply_rate(self, now: float) -> None:
        rate = self.rate
        if rate is None or rate <= 0:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(rate, now)
        elif self._bucket.rate != rate:
            self._bucket.set_rate(rate, now)

    def remaining(self, end_us: int, now: float | None = None) -> float | None:
        """Seconds until the replay reaches recorded time `end_us` at the current speed.

        From the virtual clock, so idle stretches of the recording count (an
        upper bound when `max_gap` will cut some); None with speed "max" or
        before the first exchange started the clock.
        """
        speed = self._pace.speed
        position = self._clock.recorded_position(time.time() if now is None else now)
        if speed is None or position is None:
            return None
        return max(end_us - position, 0.0) / 1e6 / speed

    # -- scheduling ---------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Exchanges scheduled and not yet released or cancelled."""
        return self._waiting

    def schedule(
        self,
        recorded_us: int,
        release: Release,
        partition: int | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> Scheduled:
        """Hold an exchange recorded at `recorded_us` until due; then `release(due)` sends it.

        `partition` lets `cancel_partitions()` find it; `on_cancel()` is called
        instead of `release` when it is cancelled (or the scheduler closed).
        """
        self._seq += 1
        if not self._heap and self._pace.speed is None and self._pace.rate is None:
            # As fast as possible, nothing ahead of it: no reason to wait a loop turn.
            release(None)
            return Scheduled(recorded_us, self._seq, None, partition)
        item = Scheduled(recorded_us, self._seq, release, partition, on_cancel, time.time())
        head = self._heap[0] if self._heap else None
        heapq.heappush(self._heap, item)
        self._waiting += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drive())
        if head is None or item < head:
            self._poke()
        return item

    def cancel(self, item: Scheduled) -> None:
        """Take `item` out; it is never released."""
        if not item.cancelled:
            self._waiting -= 1
            item.cancel()

    def cancel_partitions(self, partitions: set[int]) -> list[Scheduled]:
        """Cancel everything waiting for `partitions` (revoked); returns what was cancelled."""
        dropped = [i for i in self._heap if not i.cancelled and i.partition in partitions]
        for item in dropped:
            self.cancel(item)
        return dropped

    async def aclose(self) -> None:
        """Cancel what is waiting and stop the releasing task."""
        for item in self._heap:
            self.cancel(item)
        self._heap.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -- the releasing task -------------------------------------------------------

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _nap(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: until poked), or less when poked."""
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        handle = None
        if seconds is not None:
            handle = loop.call_later(seconds, self._poke)
        try:
            await self._wake
        finally:
            if handle is not None:
                handle.cancel()
            self._wake = None

    async def _drive(self) -> None:
        heap = self._heap
        clock = self._clock
        while True:
            while heap and heap[0].cancelled:
                heapq.heappop(heap)
            if not heap:
                await self._nap(None)
                continue
            head = heap[0]
            now = time.time()
            due = clock.due(head.recorded_us, now)
            # Ready to go since: tells the rate limiter idle from behind.
            arrived = head.since if due is None else max(due, head.since)
            ready = arrived
            bucket = self._bucket
            if bucket is not None:
                ready = max(ready, bucket.ready_at(arrived))
            elif self._pace.rate is not None:  # a share of 0: hold back until it changes
                await self._nap(None)
                continue
            wait = ready - now
            if wait > 0:
                if wait > SPIN_SECONDS:
                    await self._nap(wait - SPIN_SECONDS)
                else:
                    await asyncio.sleep(0)
                continue  # the heap or the pace may have changed meanwhile
            heapq.heappop(heap)
            clock.released(head.recorded_us)
            if bucket is not None:
                bucket.take(now, arrived)
            release = head.release
            head.release = head.on_cancel = None
            self._waiting -= 1
            if release is not None:
                release(due)
