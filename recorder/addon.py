"""The trafficmirror recorder as a mitmproxy addon: every finished exchange becomes one event.

Load it with any mitmproxy tool (`mitmdump -s recorder/addon.py --set
trafficmirror_bootstrap_servers=HOST:PORT --set trafficmirror_topic=NAME`; the
`trafficmirror` package must be installed in mitmproxy's Python), or through
`trafficmirror record`, which runs mitmproxy embedded with it. `Recorder`
writes one event per exchange when it ends and never lets recording delay,
alter or fail the live request; bodies stream through it. The rest has its
own module: the options (`recorder.options`) and the parts made of them
(`recorder.parts`), the bodies' first bytes (`recorder.capture`), the event
(`recorder.event`), secrets (`recorder.redact`), which exchanges
(`recorder.selection`), fitting an event into a Kafka message
(`recorder.fit`), the producer (`recorder.sink`), the health endpoint
(`recorder.endpoint`), and answering as the target of a mirror rule
(`recorder.mirror`, off unless `trafficmirror_mirror` is set).
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx, http
from mitmproxy import flow as mitmflow
from mitmproxy.proxy import mode_specs

from recorder import fit, options, parts
from recorder.accounting import Counts, add_up
from recorder.capture import BodyCapture, CaptureBudget, quiet_stream_logs
from recorder.drain import Drainer
from recorder.endpoint import HealthEndpoint
from recorder.event import flow_to_event, recorder_info
from recorder.h2c import PriorKnowledge
from recorder.inflight import InFlight
from recorder.lean import missing_hooks
from recorder.mirror import Mirror
from recorder.options import options_error
from recorder.redact import Redactor
from recorder.selection import FILTERED, parse_flow_filter
from recorder.sink import CONVERT_FAILED, SEEN, KafkaSink, SinkStats
from recorder.websocket import WebSocketRecorder
from schemas.codec import Codec, Encoded
from schemas.records import HttpExchange, RecorderInfo
from trafficmirror.plumbing.errors import TrafficMirrorError
from trafficmirror.plumbing.logs import Throttle

logger = logging.getLogger(__name__)

#: `flow.metadata` key set once a flow was handed to the recorder.
RECORDED_MARK = "trafficmirror.recorded"
#: `flow.metadata` key set when the filter kept the flow (its WebSocket messages follow it).
KEPT_MARK = "trafficmirror.kept"


class Recorder:
    """Records every finished HTTP exchange as an `HttpExchange` event in Kafka.

    Nothing is recorded until `trafficmirror_bootstrap_servers` and
    `trafficmirror_topic` are set. An exchange is written once, when it ends:
    on `response`, or on `error` when it has no response (an error after a
    recorded response is not recorded again: a replayer needs exactly one
    event per exchange). Flows mitmproxy replayed itself are not live traffic
    and are skipped; with `trafficmirror_filter`, the others are counted as
    filtered. What cannot be written is counted, never raised into mitmproxy:
    a full producer queue drops the event (`recorder.sink`), an exchange that
    cannot be converted or encoded is `convert_failed` (logged, rate-limited).
    On shutdown the queue is flushed for at most `trafficmirror_flush_timeout`
    seconds and one summary line is logged (`summary()`, `recorder.accounting`:
    `seen = recorded + dropped + failed`); the same counters are Prometheus
    metrics. `inflight` (a child addon) knows the exchanges under way, so that
    a stop (`recorder.drain`) can wait for them or record them cut off.
    """

    def __init__(self) -> None:
        self.sink: KafkaSink | None = None
        self.codec: Codec | None = None
        self.max_body_bytes = 1024 * 1024
        self.budget = CaptureBudget()
        self.flush_timeout = 10.0
        self.drain_timeout = 5.0
        self.seen = 0
        self.convert_failed = 0
        self.filtered = 0
        self.cut_off = 0
        #: Bodies recorded cut (over the cap, the message size, the budget, or broken off).
        self.truncations = fit.Truncations()
        #: The counts of the summary `done()` logged last (it then starts again from 0).
        self.last_counts: Counts | None = None
        self.inflight = InFlight()
        #: WebSocket messages and ends of kept upgrades (`recorder.websocket`).
        self.websockets = WebSocketRecorder(self)
        #: Child addons (mitmproxy calls their hooks after this one's).
        self.addons: list[Any] = [self.inflight, self.websockets]
        self._filter: Any = None
        self.redactor: Redactor = Redactor.from_options()
        self._info: RecorderInfo = recorder_info("")
        self._info_rewritten: RecorderInfo = self._info
        self._keep_host = False
        self._throttle = Throttle()
        self._running = False
        self._warned_inactive = False
        self._warned_host = False
        #: /healthz, /readyz and /metrics, when trafficmirror_metrics_port is set.
        self.health = HealthEndpoint(self._ready)
        self._stats: list[SinkStats] = []

    # -- options --------------------------------------------------------------

    def load(self, loader: Any) -> None:
        options.declare(loader)
        quiet_stream_logs()

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "trafficmirror_max_body_bytes" in updated:
            self.max_body_bytes = parts.non_negative(opts, "trafficmirror_max_body_bytes")
        if "trafficmirror_max_buffered_bytes" in updated:
            self.budget.resize(parts.non_negative(opts, "trafficmirror_max_buffered_bytes"))
        if "trafficmirror_flush_timeout" in updated:
            self.flush_timeout = options.seconds(opts.trafficmirror_flush_timeout)
        if "trafficmirror_drain_timeout" in updated:
            self.drain_timeout = options.seconds(
                opts.trafficmirror_drain_timeout, "trafficmirror_drain_timeout"
            )
        if "trafficmirror_filter" in updated:
            try:
                self._filter = parse_flow_filter(opts.trafficmirror_filter)
            except TrafficMirrorError as exc:
                raise options_error(f"trafficmirror_filter: {exc}") from None
        if updated & options.REDACT_OPTIONS:
            self.redactor = parts.redactor(opts)
        if updated & (options.INFO_OPTIONS | options.SINK_OPTIONS):
            self._configure_info()
        # The endpoint before the sink: a port in use fails before "recording to topic".
        if updated & options.HEALTH_OPTIONS:
            self.health.configure(opts.trafficmirror_metrics_host, opts.trafficmirror_metrics_port)
        if updated & options.SINK_OPTIONS:
            self._configure_sink()

    def _configure_info(self) -> None:
        infos = parts.infos(ctx.options)
        self._info, self._info_rewritten = infos.plain, infos.rewritten
        self._keep_host = infos.keep_host
        if infos.host_lost and not self._warned_host:
            self._warned_host = True
            logger.warning(
                "trafficmirror: keep_host_header is off, so mitmproxy rewrites the Host "
                "header to the upstream before the recorder sees it; events will carry "
                "the upstream's host (set keep_host_header=true to keep the client's)"
            )

    def _configure_sink(self) -> None:
        self._close_sink()
        opened = parts.open_sink(ctx.options, self.max_body_bytes)
        if opened is not None:
            self.codec, self.sink = opened

    def _ready(self) -> str | None:
        if not self._running:
            return "proxy not listening yet"
        sink = self.sink
        if sink is None:
            return "not recording (no bootstrap servers or topic set)"
        if not sink.kafka_reached:
            return f"Kafka at {sink.bootstrap_servers} not reached yet"
        return None

    # -- lifecycle ------------------------------------------------------------

    def running(self) -> None:
        self._running = True
        if self.sink is None and not self._warned_inactive:
            self._warned_inactive = True
            logger.warning(
                "trafficmirror: not recording; set trafficmirror_bootstrap_servers "
                "and trafficmirror_topic"
            )
        self.health.start_beat()

    def done(self) -> None:
        had_sink = self.sink is not None or bool(self._stats)
        self.health.close()
        self._close_sink()
        if had_sink:
            counts = self.last_counts = self.counts()
            level = logging.INFO if counts.dropped + counts.failed == 0 else logging.WARNING
            logger.log(level, "%s", counts.line())
            if not counts.balanced:  # a bug: every seen event must land in one bucket
                logger.error(
                    "trafficmirror: accounting does not add up: %d events seen, but "
                    "recorded + dropped + failed = %d",
                    counts.events,
                    counts.events - counts.pending,
                )
            self._stats.clear()
            self.websockets.reset()
            self.seen = self.convert_failed = self.filtered = self.cut_off = 0
            self.truncations.count = 0
            self.budget.cut = 0

    def _close_sink(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            self._stats.append(sink.close(self.flush_timeout))

    # -- hooks ----------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Bodies stream through, always (mitmproxy would buffer them whole);
        # recorded exchanges keep their first bytes (recorder.capture). A flow
        # another addon answered already must not stream (mitmproxy refuses).
        if flow.response is None and not flow.is_replay:
            flow.request.stream = self._capture()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and not flow.is_replay:
            response.stream = self._capture()

    def _capture(self) -> BodyCapture | bool:
        if self.sink is None:
            return True  # nothing is recorded: stream without keeping anything
        return BodyCapture(self.max_body_bytes, self.budget)

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        # An error after the response (the client hung up while it was sent
        # back) belongs to an exchange whose event already left.
        self._record(flow)

    def record_unfinished(self, flow: http.HTTPFlow, error: str) -> None:
        """Record an exchange a stop cut off, with `error` (unless it has one already)."""
        if RECORDED_MARK in flow.metadata:
            self.inflight.finish(flow)
            return
        if flow.error is None:
            flow.error = mitmflow.Error(error)
        seen = self.seen
        self._record(flow)
        if self.seen > seen:
            self.cut_off += 1

    def _record(self, flow: http.HTTPFlow) -> None:
        self.inflight.finish(flow)
        sink, codec = self.sink, self.codec
        if sink is None or codec is None or flow.is_replay or RECORDED_MARK in flow.metadata:
            return
        kept = False
        try:
            flow.metadata[RECORDED_MARK] = True
            if self._filter is not None and not self._filter(flow):
                # Decided once: a later error hook must not record it either.
                self.filtered += 1
                FILTERED.inc()
                return
            # From here on the exchange lands in exactly one bucket: recorded,
            # dropped or failed (the sink's counters, or convert_failed below).
            kept = True
            flow.metadata[KEPT_MARK] = True
            self.seen += 1
            SEEN.inc()
            info = self.info_for(flow)
            event = flow_to_event(flow, self.max_body_bytes, info, self.redactor)
            encoded = codec.encode(event)
            if not fit.fits(len(encoded.value), sink.max_message_bytes):
                event, encoded = self._shrink(flow, info, event, len(encoded.value), sink, codec)
            self.truncations.note(flow.id, event, self.max_body_bytes)
            sink.send(
                flow.client_conn.id.encode(),
                encoded.value,
                encoded.headers,
                int(flow.request.timestamp_start * 1000),
            )
        except Exception as exc:  # policy: recording never breaks the live flow
            if not kept:  # the filter itself failed: seen, and failed
                self.seen += 1
                SEEN.inc()
            self.convert_failed += 1
            CONVERT_FAILED.inc()
            if self._throttle.allow():
                logger.warning(
                    "trafficmirror: cannot record exchange %s: %s: %s (%d so far)",
                    flow.id,
                    type(exc).__name__,
                    exc,
                    self.convert_failed,
                )
        finally:
            _release(flow)

    def kept(self, flow: http.HTTPFlow) -> bool:
        """True if `flow` was taken for recording (the filter kept it)."""
        return KEPT_MARK in flow.metadata

    def info_for(self, flow: http.HTTPFlow) -> RecorderInfo:
        """The `RecorderInfo` of `flow`'s events: says so when mitmproxy rewrote its Host."""
        if not self._keep_host and isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
            return self._info_rewritten
        return self._info

    def _shrink(
        self,
        flow: http.HTTPFlow,
        info: RecorderInfo,
        event: HttpExchange,
        encoded_size: int,
        sink: KafkaSink,
        codec: Codec,
    ) -> tuple[HttpExchange, Encoded]:
        """Encode `flow` again with bodies cut so the event fits in a Kafka message."""
        cap = fit.body_cap(event, encoded_size, sink.max_message_bytes)
        logger.debug(
            "trafficmirror: exchange %s is %d bytes encoded, over message.max.bytes %d; "
            "cutting its bodies to %d bytes",
            flow.id,
            encoded_size,
            sink.max_message_bytes,
            cap,
        )
        event = flow_to_event(flow, cap, info, self.redactor)
        return event, codec.encode(event)

    # -- reporting ------------------------------------------------------------

    def totals(self) -> SinkStats:
        """Counters of every sink this addon used (it makes a new one on reconfiguration)."""
        return add_up([*self._stats, *([self.sink.stats] if self.sink is not None else [])])

    def counts(self) -> Counts:
        """Every counter of this addon, sinks included (exact once the sinks are closed)."""
        ws = self.websockets
        return Counts.of(
            self.totals(),
            seen=self.seen,
            convert_failed=self.convert_failed + ws.convert_failed,
            filtered=self.filtered,
            cut_off=self.cut_off,
            budget_cut=self.budget.cut,
            truncated=self.truncations.count,
            ws_messages=ws.messages,
            ws_ends=ws.ends,
            ws_messages_not_recorded=ws.messages_not_recorded,
        )

    def summary(self) -> str:
        """The one-line exit summary."""
        return self.counts().line()


def _release(flow: http.HTTPFlow) -> None:
    """Give the body bytes kept for `flow`'s event back to the budget."""
    for message in (flow.request, flow.response):
        if message is not None and isinstance(message.stream, BodyCapture):
            message.stream.release()


# Declared before `addons`: mitmproxy looks every hook up on this module first
# (see recorder.lean.missing_hooks; bench/recorder.py --instructions measures it).
globals().update(missing_hooks(globals()))

#: What mitmproxy loads from this file as a script (`mitmdump -s`): PriorKnowledge
#: (h2c clients, `recorder.h2c`; after mitmproxy's own NextLayer), then the Drainer
#: before the Recorder, so that on shutdown it drains before the Recorder flushes; `Mirror`
#: (idle unless trafficmirror_mirror is set) answers before the Recorder records.
_recorder = Recorder()
addons = [PriorKnowledge(), Drainer(_recorder), Mirror(_recorder.budget), _recorder]
