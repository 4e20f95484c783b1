"""Capacity tests: send each selected record N times, spread within its slot (`--amplify N`).

A record is sent `floor(N)` times, plus once more when its key's hash falls
below the fraction of N, so a fractional N is met on average and one recorded
connection (the Kafka key) always gets the same number of copies: each copy
is a faithful extra client. Copy k of n goes at `recorded + k/n × slot`,
the slot being the record's share of recorded time (a moving mean of the
gaps between records, at most `MAX_SLOT_SECONDS`), so N× the volume keeps
the recorded shape; the scheduler maps it onto the virtual clock (`--speed`
composes). Copies carry `X-Trafficmirror-Replay: <id>/<k>`, go to the shadow
only, each copy number on its own ordering chain, and are counted, never
compared. Writes are not amplified unless `writes` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter

from replayer.models import Outcome, OutgoingRequest, Skipped
from replayer.pacing.clock import Scheduler

logger = logging.getLogger(__name__)

#: The header every replayed request carries (`replayer.sending.request.REPLAY_HEADER`;
#: pacing may not import sending, a test keeps the two equal).
REPLAY_HEADER = "X-Trafficmirror-Replay"
#: Methods RFC 9110 calls safe: amplified by default. Any other is a write.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: The largest factor accepted: beyond it a capacity test wants more replayers.
MAX_FACTOR = 100.0
#: A slot is never wider than this, so copies of a record after a long pause stay near it.
MAX_SLOT_SECONDS = 1.0
#: Weight of the newest gap in the slot's moving mean.
SLOT_WEIGHT = 0.1

COPIES = Counter(
    "trafficmirror_replayer_copies",
    "Extra copies sent by --amplify, by outcome: sent (the shadow answered), error "
    "(no answer), skipped (a transform skipped it). Copies are not compared.",
    ["outcome"],
)

#: Submits a copy for the shadow: (request, ordering key, hooks) -> its outcome.
Submit = Callable[[OutgoingRequest, Hashable | None, Any], "asyncio.Future[Outcome]"]
#: Prepares the shadow's transforms for a copy, given the copy's own key.
Prepare = Callable[[bytes | None], Any]


@dataclass(frozen=True, slots=True)
class Amplify:
    """`factor`: sends per record (1 = no copies; 2.5 = 2 or 3); `writes`: amplify writes too."""

    factor: float = 1.0
    writes: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and 1.0 <= self.factor <= MAX_FACTOR):
            raise ValueError(f"the factor must be between 1 and {MAX_FACTOR:g}")

    @property
    def enabled(self) -> bool:
        return self.factor > 1.0


def key_fraction(key: bytes) -> float:
    """A stable number in [0, 1) for `key`: picks the keys that get the fractional copy."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def marked(request: OutgoingRequest, copy: int) -> OutgoingRequest:
    """`request` with its replay header saying `<exchange id>/<copy>`."""
    wanted = REPLAY_HEADER.lower()
    mark = f"{request.exchange_id}/{copy}"
    headers = tuple(
        (name, mark) if name.lower() == wanted else (name, value) for name, value in request.headers
    )
    if headers == request.headers:  # no replay header (a hand-made request): add one
        headers += ((REPLAY_HEADER, mark),)
    return replace(request, headers=headers)


@dataclass
class CopyCounts:
    """Copies of this run by outcome, for the summary line."""

    sent: int = 0
    errors: int = 0
    skipped: int = 0

    def add(self, kind: str) -> None:
        """Count one copy's outcome: `sent`, `error` or `skipped`."""
        if kind == "sent":
            self.sent += 1
        elif kind == "error":
            self.errors += 1
        else:
            self.skipped += 1

    def text(self) -> str:
        """`copies sent 120, copy errors 0` (`, copies skipped N` when any)."""
        line = f"copies sent {self.sent}, copy errors {self.errors}"
        return line + (f", copies skipped {self.skipped}" if self.skipped else "")


class Amplifier:
    """Plans and sends the copies of each record; one per replay run, on its event loop."""

    def __init__(
        self, options: Amplify, scheduler: Scheduler | None = None, counts: CopyCounts | None = None
    ) -> None:
        self.options = options
        self.scheduler = scheduler
        self.counts = counts if counts is not None else CopyCounts()
        self._last_us: int | None = None
        self._gap_us: float | None = None

    def copies(self, key: bytes | None, exchange_id: str, method: str) -> int:
        """How many extra copies a record gets (0 for a write unless `writes`)."""
        factor = self.options.factor
        if factor <= 1.0 or (method.upper() not in SAFE_METHODS and not self.options.writes):
            return 0
        whole = math.floor(factor)
        extra = key_fraction(key if key is not None else exchange_id.encode()) < factor - whole
        return whole - 1 + int(extra)

    def slot_us(self, recorded_us: int) -> float:
        """The slot of a record recorded at `recorded_us`; learns the gap to the previous one."""
        last, self._last_us = self._last_us, recorded_us
        if last is not None:
            gap = abs(recorded_us - last)
            self._gap_us = (
                gap if self._gap_us is None else self._gap_us + SLOT_WEIGHT * (gap - self._gap_us)
            )
        return min(self._gap_us or 0.0, MAX_SLOT_SECONDS * 1e6)

    def spawn(
        self,
        *,
        key: bytes | None,
        partition: int | None,
        recorded_us: int,
        request: OutgoingRequest,
        submit: Submit,
        prepare: Prepare | None = None,
    ) -> asyncio.Future[None] | None:
        """Schedule the copies of one record; None when it gets none.

        The future is done when every copy has an outcome or was cancelled
        (the scheduler closed, or the partition revoked): until then the
        caller holds the record as in flight.
        """
        slot = self.slot_us(recorded_us)
        count = self.copies(key, request.exchange_id, request.method)
        if not count:
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        left = count

        def finished() -> None:
            nonlocal left
            left -= 1
            if not left and not done.done():
                done.set_result(None)

        def outcome(future: asyncio.Future[Outcome]) -> None:
            if not future.cancelled():
                refused = future.exception()
                if refused is None:
                    kind = "sent" if future.result().ok else "error"
                else:
                    kind = "skipped"
                    if not isinstance(refused, Skipped):
                        logger.warning("a copy of %s failed: %s", request.exchange_id, refused)
                self.counts.add(kind)
                COPIES.labels(kind).inc()
            finished()

        total = count + 1
        for number in range(1, total):
            copy_key = None if key is None else key + b"\x00copy" + str(number).encode()
            hooks = prepare(copy_key) if prepare is not None else None
            copy = marked(request, number)
            # Its own chain per copy number: copy k of a connection keeps that connection's order.
            chain: Hashable | None = None if key is None else ("copy", number, key)

            def release(
                _due: float | None,
                copy: OutgoingRequest = copy,
                chain: Any = chain,
                hooks: Any = hooks,
            ) -> None:
                submit(copy, chain, hooks).add_done_callback(outcome)

            due_us = recorded_us + round(slot * number / total)
            if self.scheduler is None:
                release(None)
            else:
                self.scheduler.schedule(due_us, release, partition, finished)
        return done
