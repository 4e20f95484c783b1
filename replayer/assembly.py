"""The parts a replay needs, built in one place for the worker and `replay range`.

Both commands take the same options (`ReplayConfig`: target, concurrency,
comparison, guardrails, safety, selection, pace, transforms) and turn them into
the same parts: the transforming stage (`replayer.transforming.stage`: the
target of each record and the steps applied to its requests), a `Sender` per
target (`Senders`: the shadow's, and with `--baseline` the baseline's, each
with its own cap, timeout and pool, so one slow target cannot take the
other's slots; only the shadow has the error-rate guard), the
scheduler (`replayer.pacing.clock`), the pipeline, the comparison writing
`<topic>.results` and the dead letters (`<topic>.dlq`). `Assembly` builds them
and says how many records a replay may hold (`max_in_flight`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from replayer.models import Target
from replayer.pacing.amplify import Amplify
from replayer.pacing.clock import Pace, Scheduler
from replayer.pipeline import Pipeline
from replayer.results.dlq import DeadLetters
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.results.summary import Stats
from replayer.selecting.safety import SafetyOptions
from replayer.selecting.selector import SelectOptions, Selector
from replayer.sending.bodies import BodyBudget
from replayer.sending.dispatch import VersionedTransport
from replayer.sending.gate import Gate
from replayer.sending.guard import GuardOptions
from replayer.sending.sender import Sender, Transport
from replayer.sending.websocket import WebSocketClient
from replayer.transforming.config import TransformOptions
from replayer.transforming.stage import Transformer
from schemas.codec import Codec
from trafficmirror.plumbing.kafka import KafkaSettings

#: Records a replay holds (read, not yet handled) per request slot of its targets.
#: Beyond that no more records are taken: librdkafka's own prefetch queue
#: (`queued.max.messages.kbytes`) then fills and its fetching stops.
IN_FLIGHT_PER_SLOT = 4
#: The bound never goes below this, so a low concurrency still reads in batches.
MIN_IN_FLIGHT = 64


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """What `worker` and `replay range` both take: the traffic, where it goes, and how.

    `target` is the shadow's base URL (None only with a target map in
    `transforms`: records of other authorities are skipped). `http_version`:
    which protocol each request is sent in (`replayer.sending.dispatch`). `transforms`: the
    target map, rewrite rules, credentials, correlation and hook. `comparison`:
    how replays are compared and where results go; `guardrails`: the baseline's
    own cap and timeout and the shadow's error-rate guard; `safety`: whether
    records recorded from the target's own host are sent; `selection`: what is
    sent (default: GET, HEAD, OPTIONS); `pace`: speed, rate, idle compression
    (each command has its own default). `progress_interval`: seconds between
    progress lines.
    """

    settings: KafkaSettings
    topic: str
    target: str | None
    concurrency: int = 64
    timeout: float = 30.0
    #: `--http-version`: auto, 1.1 or 2 (`replayer.sending.dispatch`).
    http_version: str = "auto"
    schema_registry_url: str | None = None
    progress_interval: float = 10.0
    comparison: ComparisonOptions = field(default_factory=ComparisonOptions)
    guardrails: GuardOptions = field(default_factory=GuardOptions)
    safety: SafetyOptions = field(default_factory=SafetyOptions)
    selection: SelectOptions = field(default_factory=SelectOptions)
    pace: Pace = field(default_factory=Pace)
    transforms: TransformOptions = field(default_factory=TransformOptions)
    #: Copies of each record for capacity tests (`--amplify`); default: none.
    amplify: Amplify = field(default_factory=Amplify)

    @property
    def max_in_flight(self) -> int:
        """Records the replay may hold: `IN_FLIGHT_PER_SLOT` per slot of both targets' caps."""
        slots = self.concurrency
        if self.comparison.baseline:  # the baseline's requests have a cap of their own
            slots += self.guardrails.baseline_concurrency or self.concurrency
        return max(slots * IN_FLIGHT_PER_SLOT, MIN_IN_FLIGHT)


@dataclass
class Outputs:
    """Where a replay writes: results through the comparison, poison records to the DLQ."""

    comparison: Comparison
    dlq: DeadLetters


class Assembly:
    """Builds the parts of one replay from its config, the same way for both commands.

    In two steps, because of where each part lives: `open_outputs()` before
    the event loop runs (the producers are closed after it, once the results
    are flushed), `start()` inside it (the senders' connection pools belong to
    the loop). The scheduler is made at once: a worker's share of the rate and
    a replay session's pace are set on it before the loop starts.
    """

    def __init__(self, config: ReplayConfig, *, share: float = 1.0) -> None:
        self.config = config
        #: The default target (`--target`); None when a target map sends every record.
        self.target = Target.parse(config.target) if config.target else None
        #: Routes and transforms (imports the hook: a bad one raises ConfigError here).
        self.transformer = Transformer(
            config.transforms, self.target, baseline=config.comparison.baseline is not None
        )
        self.codec = Codec(registry_url=config.schema_registry_url)
        self.selector = Selector(config.selection)
        self.scheduler = Scheduler(config.pace, share=share)
        self._senders: Senders | None = None

    @property
    def max_in_flight(self) -> int:
        """See `ReplayConfig.max_in_flight`."""
        return self.config.max_in_flight

    @property
    def destination(self) -> str:
        """Where records go, for log lines: the target, or the target map."""
        return self.transformer.routes.describe()

    def open_outputs(self) -> Outputs:
        """The comparison (writing `<topic>.results` unless told not to) and the dead letters."""
        config = self.config
        comparison = Comparison.open(config.settings, config.topic, self.target, config.comparison)
        return Outputs(comparison, DeadLetters(config.settings, config.topic))

    def start(
        self, outputs: Outputs, transport: Transport | None, stats: Stats | None = None
    ) -> tuple[Senders, Pipeline]:
        """The senders and the pipeline that feeds them; call inside the event loop.

        `transport` None: an HTTP/1.1 pool and HTTP/2 connections per target; a given one
        (tests) serves both.
        """
        config = self.config
        comparison = outputs.comparison
        senders = Senders.open(
            transport=transport,
            concurrency=config.concurrency,
            timeout=config.timeout,
            baseline=comparison.baseline is not None,
            options=config.guardrails,
            http_version=config.http_version,
        )
        pipeline = Pipeline(
            codec=self.codec,
            target=self.target,
            sender=senders.shadow,
            stats=stats,
            comparison=comparison,
            baseline_sender=senders.baseline,
            dlq=outputs.dlq,
            safety=config.safety,
            scheduler=self.scheduler,
            selector=self.selector,
            transformer=self.transformer,
            amplify=config.amplify,
            websockets=senders.websockets,
        )
        senders.transformer = self.transformer
        self._senders = senders
        return senders, pipeline


class Senders:
    """The shadow's sender, the baseline's (or None), and the shadow's guard (or None).

    `in_flight` counts the requests of both without an outcome: a record is
    handled when both of its requests are, so every record held counts once at least.
    """

    def __init__(self, shadow: Sender, baseline: Sender | None = None) -> None:
        self.shadow = shadow
        self.baseline = baseline
        self.gate = shadow.gate
        #: Closed with the senders: its steps may hold clients (an OAuth2 token endpoint's).
        self.transformer: Transformer | None = None
        #: The WebSocket sessions' connections to the shadow (`replayer.wsreplay`).
        self.websockets = WebSocketClient(timeout=shadow.timeout)

    @classmethod
    def open(
        cls,
        *,
        transport: Transport | None,
        concurrency: int,
        timeout: float,
        baseline: bool,
        options: GuardOptions | None = None,
        http_version: str = "auto",
    ) -> Senders:
        """Senders for the shadow (and the baseline when `baseline`); call inside the loop.

        `transport` None: per target, a `VersionedTransport` (HTTP/1.1 pool sized to its cap,
        HTTP/2 connections, picked by `http_version`); a given transport (tests) serves both.
        """
        options = options or GuardOptions()
        gate = Gate(options) if options.enabled else None
        # One budget for both targets' response bodies: the bound is on their total.
        cap = options.max_response_bytes
        budget = BodyBudget.for_cap(cap)
        shadow = Sender(
            transport
            or VersionedTransport(http_version, limit=concurrency, max_body=cap, budget=budget),
            concurrency=concurrency,
            timeout=timeout,
            gate=gate,
        )
        if not baseline:
            return cls(shadow)
        slots = options.baseline_concurrency or concurrency
        other = Sender(
            transport or VersionedTransport(http_version, limit=slots, max_body=cap, budget=budget),
            concurrency=slots,
            timeout=options.baseline_timeout or timeout,
        )
        return cls(shadow, other)

    @property
    def concurrency(self) -> int:
        """The caps of both targets together."""
        return self.shadow.concurrency + (self.baseline.concurrency if self.baseline else 0)

    @property
    def in_flight(self) -> int:
        """Requests of both targets without an outcome yet."""
        if self.baseline is None:
            return self.shadow.in_flight
        return self.shadow.in_flight + self.baseline.in_flight

    @property
    def gave_up(self) -> bool:
        """True once the shadow's guard gave up on it (`GuardOptions.give_up_after`)."""
        return self.gate is not None and self.gate.gave_up

    def on_give_up(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the shadow's guard gives up (`replay range` stops then)."""
        if self.gate is not None:
            self.gate.on_give_up = callback

    @property
    def holding(self) -> bool:
        """True while the shadow's guard backs off (no new request goes out)."""
        return self.gate is not None and not self.gate.sending

    async def wait_sending(self, timeout: float) -> bool:
        """Wait up to `timeout` for the guard to send again; True when it does (or has none)."""
        if self.gate is None:
            return True
        return await self.gate.wait_sending(timeout)

    async def wait_for_room(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than `limit` requests are in flight; False if `timeout` passed."""
        if self.baseline is None:
            return await self.shadow.wait_for_room(limit, timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight >= limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # Each waits for one of its own requests to finish: the first to do so wins.
            waits = [
                asyncio.ensure_future(s.wait_for_room(s.in_flight, remaining))
                for s in (self.shadow, self.baseline)
                if s.in_flight
            ]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return True

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; False if `timeout` seconds passed first."""
        if self.baseline is None:
            return await self.shadow.drain(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for sender in (self.shadow, self.baseline):
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            if not await sender.drain(left):
                return False
        return True

    async def aclose(self) -> None:
        """Cancel what is still queued or on the wire and close the transports."""
        await self.shadow.aclose()
        if self.baseline is not None:
            await self.baseline.aclose()
        await self.websockets.aclose()
        if self.transformer is not None:
            await self.transformer.aclose()
