"""The stage after the send: compare the shadow's answer with production, write the result.

For each record the pipeline sent, `Comparison.replayed()` diffs the shadow's
response with the production response recorded in the event under the noise
`Rules` (`compare_exchange`; with `--baseline`, what production also differs
in from a second copy of production is noise), builds the `ReplayResult`
(`build_result`), counts it and hands it to `<topic>.results` through a
non-blocking producer (`replayer.results.sink`) before the pipeline marks the
record handled: a crash re-sends and re-writes rather than losing a result,
and readers keep one result per exchange. Records skipped on purpose (a
truncated request body) get a `skipped` result too (`Comparison.skipped()`).
A mirror capture has no production response: it is compared with the
baseline's response, or counted `unverified` ("no production response").
Each result names the target the request went to (with `--target-map` each
record has its own) and the transforms applied to it, by name.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replayer.comparing.endpoints import Router
from replayer.comparing.noise import Rules
from replayer.comparing.responses import (
    MIRROR_CAPTURE,
    Difference,
    ResponseView,
    compare_exchange,
)
from replayer.models import Outcome, Target
from replayer.results.build import build_result, record_metrics, result_message
from replayer.results.sink import Publisher, ResultSink
from schemas.codec import Codec
from schemas.records import HttpExchange, ReplayResult
from trafficmirror.plumbing.kafka import KafkaSettings, results_topic

if TYPE_CHECKING:
    from replayer.comparing.protodesc import ProtoDescriptors

logger = logging.getLogger(__name__)

_LOGGED_FAILURES = 5


@dataclass(frozen=True)
class ComparisonOptions:
    """How replays are compared and where their results go (the CLI's comparison options).

    `baseline`: base URL of a second copy of production that every request is
    also sent to. `routes`: explicit endpoint patterns (`GET /articles/{slug}`)
    tried before the built-in path templating. `run_id` names the replay
    session in every result, so replays of the same traffic against different
    builds can be told apart. `write_results=False` still compares (for the
    summary and the metrics) but writes nothing to `<topic>.results`.
    `protos`: the descriptors of `--proto-descriptor-set` (gRPC messages field
    by field; without them, by bytes).
    """

    rules: Rules = field(default_factory=Rules)
    baseline: str | None = None
    routes: tuple[str, ...] = ()
    run_id: str = ""
    write_results: bool = True
    protos: ProtoDescriptors | None = None


@dataclass
class ComparisonCounts:
    """Results of this process by outcome (replays, not exchanges: a redelivery counts again)."""

    match: int = 0
    mismatch: int = 0
    noise_only: int = 0
    error: int = 0
    skipped: int = 0
    unverified: int = 0  # a mirror capture with nothing to compare with: no production response
    vs_baseline: int = 0  # of match and mismatch: mirror captures compared with the baseline
    failed: int = 0  # the comparison itself raised (a bug): no result was written
    truncated: int = 0  # shadow bodies compared on their first bytes only (--max-response-bytes)

    def add(self, result: ReplayResult) -> None:
        outcome = result["outcome"]
        if outcome == "match":
            self.match += 1
            self.noise_only += bool(result["noise_count"])
        elif outcome == "mismatch":
            self.mismatch += 1
        elif outcome == "error":
            self.error += 1
        elif outcome == "unverified":
            self.unverified += 1
        else:
            self.skipped += 1
        if result["capture"] == MIRROR_CAPTURE and outcome in ("match", "mismatch"):
            self.vs_baseline += 1
        self.truncated += result["shadow_body_truncated"]


def default_replayer_id() -> str:
    """`host/pid`: the pod name in Kubernetes, and which process on a shared host."""
    return f"{socket.gethostname()}/{os.getpid()}"


class Comparison:
    """Compares each replay, counts it and hands its result to a publisher (or none)."""

    def __init__(
        self,
        options: ComparisonOptions,
        *,
        topic: str,
        target: Target | None,
        publisher: Publisher | None = None,
        replayer_id: str | None = None,
    ) -> None:
        self.options = options
        self.topic = topic
        self.target = target
        self.rules = options.rules
        self.router = Router(options.routes)
        self.baseline = Target.parse(options.baseline) if options.baseline else None
        self.publisher = publisher
        self.replayer_id = replayer_id if replayer_id is not None else default_replayer_id()
        self.codec = Codec("replay_result")
        self.counts = ComparisonCounts()
        self._failures_logged = 0

    @classmethod
    def open(
        cls, settings: KafkaSettings, topic: str, target: Target | None, options: ComparisonOptions
    ) -> Comparison:
        """A comparison writing to `<topic>.results` (unless the options say not to)."""
        publisher = ResultSink(settings) if options.write_results else None
        return cls(options, topic=topic, target=target, publisher=publisher)

    @property
    def results_topic(self) -> str:
        return results_topic(self.topic)

    def replayed(
        self,
        event: HttpExchange,
        *,
        partition: int,
        offset: int,
        outcome: Outcome,
        baseline: Outcome | None = None,
        lateness_us: int = 0,
        transforms: Sequence[str] = (),
        equal_values: Collection[tuple[str, str]] = (),
        baseline_equal_values: Collection[tuple[str, str]] = (),
    ) -> ReplayResult | None:
        """Compare, count and publish the replay of `event`; returns its result record.

        `lateness_us`: how much later than scheduled (time warp) it was sent.
        `transforms`: the names of the transforms applied to the shadow's request.
        `equal_values`: (production, shadow) value pairs value correlation mapped,
        which count as equal (`baseline_equal_values`: production vs baseline).
        Never raises: a comparison that fails (a bug) is logged and counted, and
        the record still counts as handled.
        """
        try:
            shadow = _response(outcome)
            base = _response(baseline) if baseline is not None else None
            differences: list[Difference] = []
            if shadow is not None:
                differences = compare_exchange(
                    event,
                    shadow,
                    self.rules,
                    baseline=base,
                    equal_values=equal_values,
                    baseline_equal_values=baseline_equal_values,
                    protos=self.options.protos,
                )
            result = build_result(
                event,
                topic=self.topic,
                partition=partition,
                offset=offset,
                target=outcome.request.target.origin,
                sent_us=round(outcome.sent_at * 1_000_000),
                lateness_us=lateness_us,
                shadow=shadow,
                shadow_latency_s=outcome.latency,
                error=outcome.error,
                differences=differences,
                baseline_target=self.baseline.origin if self.baseline else None,
                baseline=base,
                baseline_latency_s=baseline.latency if baseline is not None else None,
                baseline_error=baseline.error if baseline is not None else None,
                run_id=self.options.run_id,
                replayer_id=self.replayer_id,
                router=self.router,
                transforms=transforms,
            )
        except Exception:
            self._failed(event, partition, offset)
            return None
        self._emit(result)
        return result

    def skipped(
        self,
        event: HttpExchange,
        *,
        partition: int,
        offset: int,
        reason: str,
        sent_us: int,
        target: str | None = None,
        transforms: Sequence[str] = (),
    ) -> ReplayResult | None:
        """Count and publish a `skipped` result for a record deliberately not sent.

        `target`: where it would have gone (default: `--target`; empty when
        there is none, as for an authority the target map does not know).
        """
        if target is None:
            target = self.target.origin if self.target is not None else ""
        try:
            result = build_result(
                event,
                topic=self.topic,
                partition=partition,
                offset=offset,
                target=target,
                sent_us=sent_us,
                skipped=reason,
                transforms=transforms,
                run_id=self.options.run_id,
                replayer_id=self.replayer_id,
                router=self.router,
            )
        except Exception:
            self._failed(event, partition, offset)
            return None
        self._emit(result)
        return result

    def websocket_session(
        self,
        event: HttpExchange,
        *,
        partition: int,
        offset: int,
        target: str,
        sent_us: int,
        lateness_us: int = 0,
        handshake: ResponseView | None = None,
        latency_s: float | None = None,
        error: str | None = None,
        differences: Sequence[Difference] = (),
        skipped: str | None = None,
        transforms: Sequence[str] = (),
    ) -> ReplayResult | None:
        """Count and publish the one result of a replayed WebSocket session.

        `event` is its upgrade; `handshake` the shadow's answer to it (None:
        no answer, `error` says why); `differences` the session's, from
        `comparing.websocket`. The endpoint is `WS /path`, one per session.
        """
        try:
            result = build_result(
                event,
                topic=self.topic,
                partition=partition,
                offset=offset,
                target=target,
                sent_us=sent_us,
                lateness_us=lateness_us,
                shadow=handshake,
                shadow_latency_s=latency_s,
                error=error,
                differences=differences,
                skipped=skipped,
                transforms=transforms,
                run_id=self.options.run_id,
                replayer_id=self.replayer_id,
                router=self.router,
            )
            result["endpoint"] = self.router("WS", result["path"])
        except Exception:
            self._failed(event, partition, offset)
            return None
        self._emit(result)
        return result

    def _emit(self, result: ReplayResult) -> None:
        self.counts.add(result)
        record_metrics(result)
        if self.publisher is not None:
            self.publisher.send(result_message(self.topic, result, self.codec))

    def _failed(self, event: HttpExchange, partition: int, offset: int) -> None:
        self.counts.failed += 1
        if self._failures_logged < _LOGGED_FAILURES:
            self._failures_logged += 1
            logger.exception(
                "could not compare exchange %s (%s[%d]@%d)",
                event["id"],
                self.topic,
                partition,
                offset,
            )

    def line(self) -> str:
        """`comparison: match N (noise only N), mismatch N, errors N, skipped N[; results ...]`.

        Mirror captures add `, no production response N` (sent, not compared) and
        `; vs baseline N` (how many of match and mismatch were compared with the
        baseline's response).
        """
        c = self.counts
        text = (
            f"comparison: match {c.match} (noise only {c.noise_only}), mismatch {c.mismatch}, "
            f"errors {c.error}, skipped {c.skipped}"
        )
        if c.unverified:
            text += f", no production response {c.unverified}"
        if c.vs_baseline:
            text += f"; vs baseline {c.vs_baseline} (mirror captures, in match and mismatch)"
        if c.failed:
            text += f", comparison failed {c.failed}"
        if c.truncated:
            text += f"; shadow bodies truncated {c.truncated} (over --max-response-bytes)"
        if isinstance(self.publisher, ResultSink):
            text += f"; results to {self.results_topic}: {self.publisher.counts.line()}"
        elif self.publisher is None:
            text += "; results not written (--no-results)"
        return text

    def close(self, timeout: float = 10.0) -> None:
        """Flush the results for at most `timeout` seconds (idempotent)."""
        if self.publisher is not None:
            self.publisher.close(timeout)


def _response(outcome: Outcome) -> ResponseView | None:
    if outcome.response is None:
        return None
    r = outcome.response
    view = ResponseView.of(r.status, r.headers, r.body, r.trailers)
    if r.body_truncated:  # the transport kept only the first bytes (--max-response-bytes)
        view.body_truncated = True
        view.body_length = r.body_length
        view.body_sha256 = r.body_sha256
    return view
