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
(unit-tested with a fake one); `Gate` (`replayer.sending.gate`) puts it on the
event loop. Each trip, failed probe, resume and giving up is one log line and
a metric.
"""

from __future__ import annotations

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
