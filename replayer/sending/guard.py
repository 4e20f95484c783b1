"""The error-rate guard: stop hammering a shadow that fails, probe it, resume when it answers.

The shadow's sender asks the guard before each request (`Gate.admit`) and
tells it every outcome (`Gate.observe`). When too many recent requests got no
answer at all (a timeout, a refused or reset connection; any HTTP status is an
answer), the guard backs off: requests wait at the gate, the worker pauses its
partitions, and after a growing delay one waiting request goes out as a probe.
When the shadow answers, every held request goes out in order; no record is
lost or skipped (`ErrorRateGuard` says how). A request that never reached the
shadow (the connection could not be opened) trips the guard at once and waits
to be sent again: it is not a result. With `give_up_after` (`replay range`),
a guard that has backed off that long without an answer gives up, and the
replay stops. `ErrorRateGuard` is the decision logic on an injected clock
(unit-tested with a fake one); `Gate` puts it on the event loop. Each trip,
failed probe, resume and giving up is one log line and a metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from prometheus_client import Counter, Gauge

from replayer.sending.bodies import DEFAULT_MAX_RESPONSE_BYTES

logger = logging.getLogger(__name__)

GUARD_STATE = Gauge(
    "trafficmirror_replayer_guard_state",
    "Error-rate guard of the shadow: 0 sending, 1 backing off (requests held), 2 probing.",
)
GUARD_BACKOFFS = Counter(
    "trafficmirror_replayer_guard_backoffs",
    "Times the shadow's error or timeout rate passed --max-error-rate and sending stopped.",
)
GUARD_PROBES = Counter(
    "trafficmirror_replayer_guard_probes",
    "Probe requests sent to a shadow the guard backed off from, by result (ok, failed).",
    ["result"],
)
GUARD_HELD = Gauge(
    "trafficmirror_replayer_guard_held", "Requests waiting at the guard while it backs off."
)
GUARD_UNREACHED = Counter(
    "trafficmirror_replayer_guard_unreached",
    "Requests that never reached the shadow (connection refused, connect timeout, TLS "
    "handshake failed): held by the guard and sent again, not results.",
)

#: First back-off delay in seconds; each failed probe doubles it, up to `max_backoff`.
FIRST_BACKOFF = 1.0
_BUCKETS = 10


@dataclass(frozen=True)
class GuardOptions:
    """The guardrails between a replay and its targets (the CLI's guardrail options).

    `baseline_concurrency` / `baseline_timeout`: the baseline's own cap on
    requests in flight and its timeout; None means the same as the shadow's
    (`--concurrency`, `--timeout`). The shadow and the baseline never share a
    cap, so a slow baseline cannot take the shadow's slots (or the other way).

    `max_error_rate` (a fraction, 0.5 = 50 %; 1 turns the guard off),
    `error_window` (seconds) and `min_requests` decide when the guard trips;
    `max_backoff` caps the delay between probes (see `ErrorRateGuard`).
    `give_up_after`: seconds the guard may back off without the shadow
    answering before it gives up (`Gate.gave_up`; None: never, the worker's
    default: it waits for the shadow however long it takes).

    `max_response_bytes`: the most of each response body kept for comparison
    (the rest is counted and hashed as it streams past, and the response is
    flagged truncated); at most `RESPONSE_BUDGET_CAPS` times that is held at
    once across all the responses being read (`replayer.sending.bodies`).
    """

    baseline_concurrency: int | None = None
    baseline_timeout: float | None = None
    max_error_rate: float = 0.5
    error_window: float = 10.0
    min_requests: int = 20
    max_backoff: float = 30.0
    give_up_after: float | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError("max_error_rate is a fraction between 0 and 1")
        if self.error_window <= 0 or self.min_requests < 1 or self.max_backoff < FIRST_BACKOFF:
            raise ValueError("error_window > 0, min_requests >= 1, max_backoff >= 1 s")
        if self.baseline_concurrency is not None and self.baseline_concurrency < 1:
            raise ValueError("baseline_concurrency must be at least 1")
        if self.baseline_timeout is not None and self.baseline_timeout <= 0:
            raise ValueError("baseline_timeout must be positive")
        if self.give_up_after is not None and self.give_up_after <= 0:
            raise ValueError("give_up_after must be positive (None: never)")
        if self.max_response_bytes < 1:
            raise ValueError("max_response_bytes must be at least 1")

    @property
    def enabled(self) -> bool:
        """False when `max_error_rate` is 100 %: a rate never passes it."""
        return self.max_error_rate < 1


class State(IntEnum):
    """What the guard lets through (the value is the state gauge's)."""

    SENDING = 0
    BACKING_OFF = 1
    PROBING = 2


class ErrorRateGuard:
    """The guard's decisions, on `clock` (seconds, monotonic); no I/O, no event loop.

    Call `observe()` with every outcome; while `state` is not SENDING, ask
    `probe_due()` and call `start_probe()` when one goes out. The states:

    * SENDING: outcomes go into a sliding window of `error_window` seconds;
      when it holds at least `min_requests` outcomes and more than
      `max_error_rate` of them are errors, the guard trips;
    * BACKING_OFF: no new request goes out; each waits at the gate, outside
      the sender's concurrency slot and timeout (`replay range` stops
      reading). After a delay (1 s, then 2 s, 4 s ... up to `max_backoff`) the
      next waiting request goes out as the probe;
    * PROBING: one request on the wire. If the shadow answers, back to SENDING
      (with an empty window) and every waiting request is released in the
      order they came; if not, the same request waits for the next, longer
      delay and is sent again. A probe is a real record, retried, and its
      failed attempts are not results (the record gets one result, for the
      attempt the shadow answered).

    Requests already on the wire when the guard trips finish as they would
    have (an error among them is a result with outcome `error`). Metrics:
    `trafficmirror_replayer_guard_state` (the `State` value),
    `..._guard_backoffs_total` (trips), `..._guard_probes_total{result}`,
    `..._guard_held` (requests waiting).
    """

    def __init__(self, options: GuardOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.clock = clock
        self.state = State.SENDING
        self.delay = 0.0  # the current back-off delay
        self.probe_at = 0.0  # when the next probe may go out (BACKING_OFF)
        self.backoffs = 0
        self.probes_failed = 0  # since the last trip
        self.tripped_at = 0.0
        # Buckets of [start, requests, errors], a tenth of the window each: a few
        # entries whatever the request rate, and a window exact to a tenth.
        self._buckets: deque[list[float]] = deque()
        self._bucket = options.error_window / _BUCKETS

    def window(self) -> tuple[int, int]:
        """(requests, errors) in the sliding window ending now."""
        self._expire(self.clock())
        return self._totals()

    def _totals(self) -> tuple[int, int]:
        requests = errors = 0
        for _, r, e in self._buckets:
            requests += int(r)
            errors += int(e)
        return requests, errors

    def _expire(self, now: float) -> None:
        edge = now - self.options.error_window
        buckets = self._buckets
        while buckets and buckets[0][0] + self._bucket <= edge:
            buckets.popleft()

    def observe(
        self, ok: bool, probe: bool = False, error: str | None = None, unreached: bool = False
    ) -> bool:
        """Count one outcome; True means: send the same request again.

        Again after a failed probe, and after any request that never reached
        the shadow (`unreached`: it is not a result; one while sending trips
        the guard at once, whatever the window holds). Outcomes of requests
        that went out before a trip, arriving while the guard backs off or
        probes, change nothing: only probes decide.
        """
        now = self.clock()
        if unreached:
            GUARD_UNREACHED.inc()
        if probe and self.state is State.PROBING:
            return self._probe_result(now, ok, error)
        if unreached:
            if self.state is State.SENDING:
                self._trip(now, 0, 0, error)
            return True
        if self.state is not State.SENDING or not self.options.enabled:
            return False
        buckets = self._buckets
        if not buckets or now >= buckets[-1][0] + self._bucket:
            buckets.append([now, 0, 0])
        last = buckets[-1]
        last[1] += 1
        if ok:
            return False
        last[2] += 1
        self._expire(now)
        requests, errors = self._totals()
        limits = self.options
        if requests >= limits.min_requests and errors > limits.max_error_rate * requests:
            self._trip(now, requests, errors, error)
        return False

    def _trip(self, now: float, requests: int, errors: int, error: str | None) -> None:
        self.state = State.BACKING_OFF
        self.backoffs += 1
        self.probes_failed = 0
        self.tripped_at = now
        self.delay = FIRST_BACKOFF
        self.probe_at = now + self.delay
        GUARD_BACKOFFS.inc()
        GUARD_STATE.set(self.state)
        if not requests:
            logger.warning(
                "guard: the shadow is unreachable (%s); backing off: requests held, probe in %gs",
                error or "no connection",
                self.delay,
            )
            return
        logger.warning(
            "guard: shadow errors %d of %d requests in the last %gs (%.0f%%, over "
            "--max-error-rate %g%%; last: %s); backing off: requests held, probe in %gs",
            errors,
            requests,
            self.options.error_window,
            100 * errors / requests,
            100 * self.options.max_error_rate,
            error or "no response",
            self.delay,
        )

    def _probe_result(self, now: float, ok: bool, error: str | None) -> bool:
        if ok:
            GUARD_PROBES.labels("ok").inc()
            logger.warning(
                "guard: shadow answered the probe after %.1fs of backing off (failed probes: "
                "%d); sending again",
                now - self.tripped_at,
                self.probes_failed,
            )
            self.state = State.SENDING
            self._buckets.clear()
            GUARD_STATE.set(self.state)
            return False
        GUARD_PROBES.labels("failed").inc()
        self.probes_failed += 1
        self.delay = min(self.delay * 2, self.options.max_backoff)
        self.probe_at = now + self.delay
        self.state = State.BACKING_OFF
        GUARD_STATE.set(self.state)
        logger.warning(
            "guard: probe failed (%s); still backing off, next probe in %gs",
            error or "no response",
            self.delay,
        )
        return True

    def probe_due(self) -> float:
        """Seconds until a probe may go out (0 or less: now); only while BACKING_OFF."""
        return self.probe_at - self.clock()

    def start_probe(self) -> None:
        """A probe goes out now."""
        self.state = State.PROBING
        GUARD_STATE.set(self.state)

    def probe_abandoned(self) -> None:
        """The probe was cancelled before an outcome: the next request probes at once."""
        if self.state is State.PROBING:
            self.state = State.BACKING_OFF
            self.probe_at = self.clock()
            GUARD_STATE.set(self.state)


class Gate:
    """An `ErrorRateGuard` on the running event loop, for the shadow's `Sender`.

    `sending` is a plain attribute read before every request, so a guard that
    lets everything through costs one check. Waiting requests are released in
    the order they arrived; a failed probe goes back to the front.
    """

    def __init__(self, options: GuardOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.guard = ErrorRateGuard(options, clock)
        self.sending = True
        #: True once the guard backed off for `give_up_after` without an answer.
        self.gave_up = False
        #: Called (once) when it gives up: `replay range` stops through it.
        self.on_give_up: Callable[[], None] | None = None
        self._give_up_timer: asyncio.TimerHandle | None = None
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        GUARD_STATE.set(State.SENDING)
        GUARD_HELD.set(0)

    @property
    def state(self) -> State:
        return self.guard.state

    @property
    def held(self) -> int:
        """Requests waiting at the gate."""
        return len(self._waiters)

    async def admit(self, retry: bool = False) -> bool:
        """Wait until this request may go out; True if it is the probe.

        `retry`: the request is a failed probe going again (it keeps its place
        at the front).
        """
        if self.guard.state is State.SENDING:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if retry:
            self._waiters.appendleft(future)
        else:
            self._waiters.append(future)
        GUARD_HELD.set(len(self._waiters))
        self._arm()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.guard.probe_abandoned()
                self._arm()
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
                GUARD_HELD.set(len(self._waiters))
            raise

    def observe(
        self, ok: bool, probe: bool = False, error: str | None = None, unreached: bool = False
    ) -> bool:
        """Count an outcome; True: call `admit()` and send it again (`ErrorRateGuard.observe`).

        A failed probe is admitted with `retry=True` (first in line again).
        """
        before = self.guard.state
        retry = self.guard.observe(ok, probe, error, unreached)
        after = self.guard.state
        if after is State.SENDING and before is not State.SENDING:
            self._release_all()
        elif after is State.BACKING_OFF and before is State.SENDING:
            self.sending = False
            self._resumed.clear()
            limit = self.guard.options.give_up_after
            if limit is not None and self._give_up_timer is None:
                self._give_up_timer = asyncio.get_running_loop().call_later(limit, self._give_up)
        return retry

    def _give_up(self) -> None:
        self._give_up_timer = None
        if self.guard.state is State.SENDING:
            return
        self.gave_up = True
        logger.error(
            "guard: the shadow has not answered for %.1fs of backing off and %d failed probes "
            "(--give-up-after); giving up",
            self.guard.clock() - self.guard.tripped_at,
            self.guard.probes_failed,
        )
        if self.on_give_up is not None:
            self.on_give_up()

    def _arm(self) -> None:
        """Make sure the next probe goes out when it is due and someone waits."""
        if self.guard.state is not State.BACKING_OFF or not self._waiters:
            return
        if self._timer is not None:
            self._timer.cancel()
        due = self.guard.probe_due()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(due, 0.0), self._release_probe)

    def _release_probe(self) -> None:
        self._timer = None
        if self.guard.state is not State.BACKING_OFF:
            return
        if self.guard.probe_due() > 0:  # the delay grew meanwhile
            self._arm()
            return
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                self.guard.start_probe()
                future.set_result(True)
                break
        GUARD_HELD.set(len(self._waiters))

    def _release_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        self.sending = True
        self._resumed.set()
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(False)
        GUARD_HELD.set(0)

    def abandoned(self) -> None:
        """The probe was cancelled on the wire (the sender is closing)."""
        self.guard.probe_abandoned()
        self._arm()

    async def wait_sending(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the guard to send again; True if it does."""
        try:
            async with asyncio.timeout(timeout):
                await self._resumed.wait()
        except TimeoutError:
            return False
        return True
