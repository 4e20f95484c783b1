"""What happens to one Kafka record, shared by the group worker and `replay range`.

`Pipeline.handle()` takes a record through the stages in the order of the flow:
select on Kafka metadata (`selecting.selector`), decode into an `HttpExchange`
(`schemas.codec`), select on the event and check the original host
(`selecting.safety`) against the target it goes to (`transforming.targets`:
`--target` or `--target-map`), build the request (`sending.request`), wait for
its due time (`pacing.clock`, when paced), send it keyed by the recorded
connection so each connection stays in order (`sending.sender`, and the
baseline's sender with `--baseline`), transformed just before it goes out
(`transforming`: the sender runs the chain when the request's turn comes),
then compare and write the result (`results.stage`). With `--amplify`,
`pacing.amplify` schedules copies of it (shadow only, counted, not compared).
It returns a future that is done when the record is handled for good, which
callers use to finish offsets; a record waiting for its due time is in flight.
No record holds its partition back: one selection drops is handled at once
with no result (not chosen, rather than not comparable), one skipped on purpose
(a truncated body, the original host) gets a `skipped` result, and a poison
record (undecodable, or `Unsendable`) goes to the dead-letter queue
(`results.dlq`) first. A record a transform skips gets a `skipped` result.
WebSocket upgrades, messages and ends go to their session (`wsreplay`); an
event kind this version does not know is skipped (`unknown-kind`) with a
result. Counts go to `Stats` and the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter as Tally

from replayer.comparing.responses import is_mirror_capture
from replayer.models import Outcome, OutgoingRequest, Record, Result, Skipped, Target, Unsendable
from replayer.pacing.amplify import Amplifier, Amplify
from replayer.pacing.clock import Scheduler
from replayer.results.counters import CONSUMED, ERRORS, IN_FLIGHT, LATENCY, LATENESS, SENT, SKIPPED
from replayer.results.dlq import RETRY_SECONDS, DeadLetters
from replayer.results.stage import Comparison
from replayer.results.summary import PartitionCounts, Progress, Stats
from replayer.selecting.safety import OriginalHostGuard, SafetyOptions
from replayer.selecting.selector import Selector
from replayer.sending.request import build_request
from replayer.sending.sender import Sender
from replayer.sending.websocket import WebSocketClient
from replayer.transforming.chain import Prepared
from replayer.transforming.stage import Transformer
from replayer.transforming.targets import Routes
from replayer.wsreplay import WebSocketReplay, is_upgrade
from schemas.codec import Codec
from schemas.records import KIND_HTTP, WEBSOCKET_KINDS, HttpExchange
from trafficmirror.plumbing.errors import DecodeError

# `Stats` and `Progress` moved to `replayer.results.summary`; named here too for
# the callers that import them from the pipeline.
__all__ = ["PartitionCounts", "Pipeline", "Progress", "Stats"]

logger = logging.getLogger(__name__)

#: Errors (shadow or decode) logged one by one before only counting them.
_LOGGED_PER_KIND = 5


class Pipeline:
    """Decode → select → build → send → account, for one replay run."""

    def __init__(
        self,
        *,
        codec: Codec,
        target: Target | None,
        sender: Sender,
        stats: Stats | None = None,
        comparison: Comparison | None = None,
        baseline_sender: Sender | None = None,
        scheduler: Scheduler | None = None,
        dlq: DeadLetters | None = None,
        safety: SafetyOptions | None = None,
        selector: Selector | None = None,
        transformer: Transformer | None = None,
        amplify: Amplify | None = None,
        websockets: WebSocketClient | None = None,
    ) -> None:
        self.codec = codec
        self.selector = selector
        self.target = target
        self.sender = sender
        #: Where the baseline's requests go (default: `sender`).
        self.baseline_sender = baseline_sender or sender
        self.stats = stats or Stats()
        self.comparison = comparison
        self.scheduler = scheduler
        self.dlq = dlq
        self.guard = OriginalHostGuard(target, safety)
        #: Rewrites, credentials, correlation, hook (None: requests go as recorded).
        self.transformer = transformer
        #: The target of each record: `target`, or per recorded authority (a target map).
        self.routes = transformer.routes if transformer is not None else Routes(target)
        #: Extra copies of each record for capacity tests (`--amplify`), or None.
        self.amplifier = (
            Amplifier(amplify, scheduler, self.stats.copies)
            if amplify is not None and amplify.enabled
            else None
        )
        #: WebSocket sessions being replayed (the client is closed with the senders).
        self.websockets = WebSocketReplay(
            websockets or WebSocketClient(timeout=sender.timeout),
            stats=self.stats,
            scheduler=scheduler,
            comparison=comparison,
        )
        #: Poison records whose dead letter waits for room in the producer's queue.
        self.waiting_dead_letters = 0
        self._logged: Tally[str] = Tally()
        self._in_flight = 0
        self._progress = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Records handed to `handle()` and not finished: waiting for their due time or sending."""
        return self._in_flight

    async def wait_for_room(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than `limit` records are in flight; False if `timeout` passed."""
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight >= limit:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    def abandon(self, partitions: set[int]) -> int:
        """Drop the records of `partitions` still waiting for their due time (revoked).

        Their futures are cancelled: they were not handled and the next owner
        reads them again. Returns how many there were.
        """
        sessions = self.websockets.abandon(partitions)
        if self.scheduler is None:
            return sessions
        return len(self.scheduler.cancel_partitions(partitions)) + sessions

    def handle(self, record: Record) -> asyncio.Future[Result]:
        """Start handling `record`; the future completes when it is handled for good.

        It is cancelled (not completed) only when the sender is closed before
        the request finished, or the dead-letter queue before a poison record's
        dead letter could be queued: such a record was not handled and must be
        read again.
        """
        loop = asyncio.get_running_loop()
        self.stats.read(record)
        CONSUMED.inc()
        comparison = self.comparison
        selector = self.selector
        try:
            if selector is not None:
                dropped = selector.before_decode(record.key, record.timestamp_ms)
                if dropped is not None:
                    return self._finished(loop, Result(record, "skipped", dropped))
            event = self.codec.decode_exchange(record.value)
            if event["kind"] != KIND_HTTP:  # a session's record follows its upgrade's selection
                return self._not_http(loop, record, event)
            if selector is not None:
                dropped = selector.after_decode(event)
                if dropped is not None:
                    return self._finished(loop, Result(record, "skipped", dropped))
            target = self.routes.target_for(event)
            self.guard.check(event, target)
            request = build_request(event, target)
            baseline = None
            if comparison is not None and comparison.baseline is not None:
                baseline = build_request(event, comparison.baseline)
        except DecodeError as exc:
            return self._poisoned(loop, record, "undecodable", str(exc))
        except Unsendable as exc:
            return self._poisoned(loop, record, "unsendable", str(exc))
        except Skipped as exc:  # raised by the guard or build_request: `event` is set
            self._log("skipped-" + exc.reason, record, str(exc), logging.INFO)
            if comparison is not None:
                comparison.skipped(
                    event,
                    partition=record.partition,
                    offset=record.offset,
                    reason=exc.reason,
                    sent_us=round(time.time() * 1_000_000),
                )
            return self._finished(loop, Result(record, "skipped", exc.reason))
        # Nothing else is caught, because nothing else can come: the codec resolves
        # every record into the newest schema or raises DecodeError, so an event has
        # every field of `HttpExchange` with its type, and selection, the routes, the
        # guard and build_request are total over such events (they refuse with Skipped
        # or Unsendable; tests/schemas/test_codec_fuzz.py feeds them mutated records).
        shadow_hooks: Prepared | None = None
        baseline_hooks: Prepared | None = None
        transformer = self.transformer
        if transformer is not None:
            if transformer.shadow is not None:
                shadow_hooks = transformer.prepare(transformer.shadow, record.key, event, "shadow")
            if baseline is not None and transformer.baseline is not None:
                baseline_hooks = transformer.prepare(
                    transformer.baseline, record.key, event, "baseline"
                )
        if is_upgrade(event):  # a WebSocket session: one result when it ends
            return self.websockets.upgrade(record, event, request, shadow_hooks)
        result: asyncio.Future[Result] = loop.create_future()
        IN_FLIGHT.inc()
        self._in_flight += 1
        futures: list[asyncio.Future[Outcome]] = []
        waiting = 0
        due_at: float | None = None

        def release(due: float | None) -> None:
            nonlocal waiting, due_at
            due_at = due
            futures.append(self.sender.submit(request, record.key, shadow_hooks))
            if baseline is not None:
                # Its own ordering chain: the baseline's requests of one recorded
                # connection stay in order without waiting for the shadow's.
                key = None if record.key is None else ("baseline", record.key)
                futures.append(self.baseline_sender.submit(baseline, key, baseline_hooks))
            waiting = len(futures)
            for future in futures:
                future.add_done_callback(sent)

        def cancelled() -> None:
            self._settle()
            result.cancel()

        def sent(_: asyncio.Future[Outcome]) -> None:
            nonlocal waiting
            waiting -= 1
            if waiting:
                return
            self._settle()
            if any(f.cancelled() for f in futures):
                result.cancel()
                return
            applied = shadow_hooks.context.applied if shadow_hooks is not None else ()
            base_outcome = None
            if baseline is not None:
                base_outcome = _outcome(futures[1], baseline)
            refused = futures[0].exception()
            if refused is not None:  # a transform skipped it: nothing went to the shadow
                reason = refused.reason if isinstance(refused, Skipped) else "transform"
                self._log("skipped-" + reason, record, str(refused), logging.INFO)
                if comparison is not None:
                    comparison.skipped(
                        event,
                        partition=record.partition,
                        offset=record.offset,
                        reason=reason,
                        sent_us=round(time.time() * 1_000_000),
                        target=request.target.origin,
                        transforms=applied,
                    )
                SKIPPED.labels(reason).inc()
                done = Result(record, "skipped", reason)
                self.stats.add(done)
                if not result.done():
                    result.set_result(done)
                return
            outcome = futures[0].result()
            LATENCY.observe(outcome.latency)
            lateness_us = 0
            if due_at is not None:
                lateness = outcome.sent_at - due_at
                LATENESS.observe(max(lateness, 0.0))
                self.stats.lateness.add(lateness)
                lateness_us = round(lateness * 1_000_000)
            if outcome.ok:
                SENT.inc()
                done = Result(record, "sent", None, outcome)
                if event["response"] is None and is_mirror_capture(event):
                    self.stats.no_production += 1
            else:
                ERRORS.inc()
                self._log("error", record, outcome.error or "no response", logging.WARNING)
                done = Result(record, "error", outcome.error, outcome)
            if comparison is not None:
                comparison.replayed(
                    event,
                    partition=record.partition,
                    offset=record.offset,
                    outcome=outcome,
                    baseline=base_outcome,
                    lateness_us=lateness_us,
                    transforms=applied,
                    equal_values=shadow_hooks.context.equal_values if shadow_hooks else (),
                    baseline_equal_values=(
                        baseline_hooks.context.equal_values if baseline_hooks else ()
                    ),
                )
            self.stats.add(done)
            if not result.done():
                result.set_result(done)

        if self.scheduler is None:
            release(None)
        else:
            self.scheduler.schedule(event["request_start_us"], release, record.partition, cancelled)
        if self.amplifier is not None:  # capacity tests: copies to the shadow, not compared
            chain = transformer.shadow if transformer is not None else None
            copies = self.amplifier.spawn(
                key=record.key,
                partition=record.partition,
                recorded_us=event["request_start_us"],
                request=request,
                submit=self.sender.submit,
                # Each copy has a context of its own (another key): it is another client.
                prepare=None
                if transformer is None or chain is None
                else functools.partial(transformer.prepare, chain, event=event, role="shadow"),
            )
            if copies is not None:  # held in flight until each copy has an outcome
                IN_FLIGHT.inc()
                self._in_flight += 1
                copies.add_done_callback(lambda _: self._settle())
        return result

    def _not_http(
        self, loop: asyncio.AbstractEventLoop, record: Record, event: HttpExchange
    ) -> asyncio.Future[Result]:
        """A WebSocket message or end goes to its session; an unknown kind is skipped."""
        if event["kind"] in WEBSOCKET_KINDS:
            future = self.websockets.message(record, event)  # Unsendable without its record
            if not future.done():  # waiting for its due time: held like a request
                IN_FLIGHT.inc()
                self._in_flight += 1
                future.add_done_callback(lambda _: self._settle())
            return future
        detail = f"event kind {event['kind'][:40]!r} is not replayed by this version"
        self._log("skipped-unknown-kind", record, detail, logging.INFO)
        if self.comparison is not None:
            self.comparison.skipped(
                event,
                partition=record.partition,
                offset=record.offset,
                reason=f"unknown-kind: {detail}",
                sent_us=round(time.time() * 1_000_000),
            )
        return self._finished(loop, Result(record, "skipped", "unknown-kind"))

    def _settle(self) -> None:
        IN_FLIGHT.dec()
        self._in_flight -= 1
        self._progress.set()

    def _poisoned(
        self, loop: asyncio.AbstractEventLoop, record: Record, reason: str, detail: str
    ) -> asyncio.Future[Result]:
        """A record that cannot be decoded or sent: dead-letter it, then count it handled."""
        dlq = self.dlq
        if dlq is not None and not dlq.send(record, reason, detail):
            future: asyncio.Future[Result] = loop.create_future()
            self.waiting_dead_letters += 1

            def attempt() -> None:
                if future.done():
                    self.waiting_dead_letters -= 1
                elif dlq.closed:
                    self.waiting_dead_letters -= 1
                    future.cancel()  # not handled: the record is read again later
                elif dlq.send(record, reason, detail, retry=True):
                    self.waiting_dead_letters -= 1
                    future.set_result(self._dead_lettered(loop, record, reason, detail).result())
                else:
                    loop.call_later(RETRY_SECONDS, attempt)

            loop.call_later(RETRY_SECONDS, attempt)
            return future
        return self._dead_lettered(loop, record, reason, detail)

    def _dead_lettered(
        self, loop: asyncio.AbstractEventLoop, record: Record, reason: str, detail: str
    ) -> asyncio.Future[Result]:
        if reason == "undecodable":
            return self._finished(loop, Result(record, "undecodable", detail))
        self._log(reason, record, detail, logging.WARNING)
        return self._finished(loop, Result(record, "skipped", reason))

    def _finished(self, loop: asyncio.AbstractEventLoop, result: Result) -> asyncio.Future[Result]:
        if result.kind == "undecodable":
            self._log("undecodable", result.record, result.detail or "", logging.WARNING)
            SKIPPED.labels("undecodable").inc()
        else:
            SKIPPED.labels(result.detail or "other").inc()
        self.stats.add(result)
        future: asyncio.Future[Result] = loop.create_future()
        future.set_result(result)
        return future

    def _log(self, kind: str, record: Record, detail: str, level: int) -> None:
        self._logged[kind] += 1
        count = self._logged[kind]
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if count <= _LOGGED_PER_KIND:
            last = count == _LOGGED_PER_KIND
            more = " (further ones are only counted; -v logs each)" if last else ""
            logger.log(level, "%s %s: %s%s", kind, where, detail, more)
        else:
            logger.debug("%s %s: %s", kind, where, detail)


def _outcome(future: asyncio.Future[Outcome], request: OutgoingRequest) -> Outcome:
    """The baseline's outcome; one with an error when its transforms skipped it."""
    refused = future.exception()
    if refused is None:
        return future.result()
    return Outcome(request, None, f"not sent: {refused}", time.time(), 0.0)
