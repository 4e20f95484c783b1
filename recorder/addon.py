"""The trafficmirror recorder as a mitmproxy addon: every finished exchange → Kafka.

Use it with any mitmproxy tool (the `trafficmirror` package must be installed
in mitmproxy's Python environment)::

    mitmdump -s /path/to/recorder/addon.py \\
        --mode reverse:http://127.0.0.1:8080@127.0.0.1:8081 \\
        --set keep_host_header=true \\
        --set trafficmirror_bootstrap_servers=127.0.0.1:9092 \\
        --set trafficmirror_topic=traffic

or through `trafficmirror record`, which runs mitmproxy embedded with this addon.
The addon records nothing until both `trafficmirror_bootstrap_servers` and
`trafficmirror_topic` are set.

What is recorded, and when
    One event per HTTP exchange, written when the exchange ends: on the
    `response` hook (the response is complete), or on the `error` hook when there
    is no response (upstream unreachable, client gone, protocol error). An
    `error` that follows a recorded response (for example the client hangs up
    while the response is sent back) is not recorded again: the event already
    left, and a replayer needs exactly one event per exchange. Flows that
    mitmproxy itself replayed (client or server playback) are not live traffic
    and are skipped. With `trafficmirror_filter` set (a mitmproxy filter
    expression), only matching exchanges are recorded; the others are counted
    as `filtered` (see `recorder.selection`).

The Host header
    In reverse-proxy mode mitmproxy rewrites Host (or `:authority`) to the
    upstream before any addon runs, unless `keep_host_header` is set. With it
    set, the app receives the client's Host and the event records it. Without
    it, the client's Host is gone before the addon sees the request: events from
    reverse-mode flows then carry the upstream's host, and say so in
    `recorder.redactions` (`request.header:host=upstream`); a warning is logged
    at start. The addon never changes the live request or response.

Secrets
    Before an exchange becomes an event, the headers in
    `trafficmirror_redact_header` (by default also Authorization,
    Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key) and the JSON body
    paths in `trafficmirror_redact_json` are dropped, masked or replaced by an
    HMAC (see `recorder.redact`); each event lists what was redacted in
    `recorder.redactions`. Nothing unredacted is encoded, queued or logged.

Bodies and Kafka's message size
    A body longer than `trafficmirror_max_body_bytes` is cut and flagged
    truncated with its original length. An event that would still exceed the
    producer's `message.max.bytes` (librdkafka's default is 1,000,000 bytes,
    under a broker's default limit; two 1 MiB bodies are more) is encoded again
    with both bodies cut further, so it is recorded, flagged, rather than
    refused by Kafka.

When an event cannot be written
    The live exchange always wins: recording never delays, alters or fails a
    request. Events are queued in the Kafka producer without waiting; when its
    bounded queue is full (the broker is slow or away) the event is dropped
    and counted. An exchange that cannot be converted or encoded, and any
    other exception inside the addon's hooks, is caught, counted and logged
    (rate-limited), never raised into mitmproxy. On shutdown the queue is
    flushed for at most `trafficmirror_flush_timeout` seconds; what is left is
    counted as undelivered. One summary line is logged on exit:
    `recorded` (acknowledged by Kafka), `dropped` (queue full or undelivered at
    exit) and `failed` (rejected by Kafka or the client, or not convertible).
    The same counters are Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Optional

from mitmproxy import ctx, exceptions, hooks, http
from mitmproxy.proxy import mode_specs

from recorder.event import flow_to_event, recorder_info
from recorder.redact import Redactor
from recorder.selection import FILTERED, parse_flow_filter
from recorder.sink import CONVERT_FAILED, KafkaSink, SinkStats
from schemas.codec import Codec
from schemas.records import HttpExchange, RecorderInfo
from trafficmirror.plumbing.errors import TrafficMirrorError
from trafficmirror.plumbing.health import HealthServer, HealthState
from trafficmirror.plumbing.kafka import KafkaSettings

logger = logging.getLogger("trafficmirror.recorder")

#: `flow.metadata` key set once a flow was handed to the recorder.
RECORDED_MARK = "trafficmirror.recorded"
#: Redaction note for events whose Host was rewritten to the upstream by mitmproxy.
HOST_REWRITTEN = "request.header:host=upstream"

#: Options whose change means a new producer (and codec).
_SINK_OPTIONS = frozenset(
    {
        "trafficmirror_bootstrap_servers",
        "trafficmirror_topic",
        "trafficmirror_kafka_property",
        "trafficmirror_kafka_config",
        "trafficmirror_schema_registry_url",
    }
)
#: Options that change what every event's RecorderInfo says.
_INFO_OPTIONS = frozenset({"trafficmirror_recorder_id", "keep_host_header", "mode", "listen_port"})
_REDACT_OPTIONS = frozenset(
    {
        "trafficmirror_redact_header",
        "trafficmirror_redact_json",
        "trafficmirror_redact_key_file",
        "trafficmirror_redact_defaults",
    }
)
#: Room left in a Kafka message for the key, headers and record framing.
_MESSAGE_MARGIN = 16 * 1024
_ERROR_LOG_INTERVAL = 30.0


class Recorder:
    """Records every finished HTTP exchange as an `HttpExchange` event in Kafka."""

    def __init__(self) -> None:
        self.sink: KafkaSink | None = None
        self.codec: Codec | None = None
        self.max_body_bytes = 1024 * 1024
        self.flush_timeout = 10.0
        self.convert_failed = 0
        self.filtered = 0
        self._filter: Any = None
        self.redactor: Redactor = Redactor.from_options()
        self._info: RecorderInfo = recorder_info("")
        self._info_rewritten: RecorderInfo = self._info
        self._keep_host = False
        self._last_error_log = -_ERROR_LOG_INTERVAL
        self._running = False
        self._warned_inactive = False
        self._warned_host = False
        self._health: HealthServer | None = None
        self._health_state: HealthState | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._stats: list[SinkStats] = []

    # -- options --------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "trafficmirror_bootstrap_servers",
            str,
            "",
            "Kafka bootstrap servers (host:port[,host:port...]) the recorder writes to. "
            "Nothing is recorded until this and trafficmirror_topic are set.",
        )
        loader.add_option(
            "trafficmirror_topic",
            str,
            "",
            "Kafka topic that receives one Avro HttpExchange event per recorded exchange, "
            "keyed by client connection, timestamped with the request start.",
        )
        loader.add_option(
            "trafficmirror_kafka_property",
            Sequence[str],
            [],
            "Any librdkafka producer property as key=value, e.g. "
            "security.protocol=SASL_SSL; repeat the option for several. "
            "Wins over trafficmirror_kafka_config and the recorder's defaults.",
        )
        loader.add_option(
            "trafficmirror_kafka_config",
            Optional[str],  # mitmproxy matches typespecs against typing.Optional
            None,
            "Path of a properties file (key=value lines) of librdkafka settings.",
        )
        loader.add_option(
            "trafficmirror_max_body_bytes",
            int,
            1024 * 1024,
            "Record at most this many bytes of each request and response body; a longer "
            "body is cut and flagged body_truncated, with its original length kept.",
        )
        loader.add_option(
            "trafficmirror_recorder_id",
            str,
            "",
            "Name of this recorder, written into every event (default: hostname:listen port).",
        )
        loader.add_option(
            "trafficmirror_schema_registry_url",
            Optional[str],  # mitmproxy matches typespecs against typing.Optional
            None,
            "Confluent Schema Registry URL: register the event schema under "
            "<topic>-value and write the registry's wire format instead of Avro "
            "single-object encoding.",
        )
        loader.add_option(
            "trafficmirror_flush_timeout",
            str,
            "10",
            "Seconds (may be fractional) to wait on shutdown for queued events to reach "
            "Kafka; events still queued then are counted as undelivered.",
        )
        loader.add_option(
            "trafficmirror_redact_header",
            Sequence[str],
            [],
            "Header to redact in requests, responses and trailers before the event is "
            "written, as NAME or NAME=MODE; MODE is mask (value becomes ***, the default), "
            "drop (header removed) or hmac (hmac-sha256:<hex>, equal values stay equal; "
            "needs trafficmirror_redact_key_file or $TRAFFICMIRROR_REDACT_KEY). Repeat for "
            "several; also changes the mode of a default header.",
        )
        loader.add_option(
            "trafficmirror_redact_json",
            Sequence[str],
            [],
            "JSON body path to redact in requests and responses, as PATH or PATH=MODE "
            "(modes as for trafficmirror_redact_header), e.g. $.password, $.card.number=hmac, "
            "$.users[*].token, $..secret. Bodies that are changed are written back as compact "
            "JSON with Content-Length updated in the event; a JSON body that cannot be parsed "
            "is left out of the event. Repeat for several.",
        )
        loader.add_option(
            "trafficmirror_redact_key_file",
            Optional[str],  # mitmproxy matches typespecs against typing.Optional
            None,
            "File holding the HMAC key (16 bytes or more) for redaction mode hmac; "
            "without it $TRAFFICMIRROR_REDACT_KEY is used.",
        )
        loader.add_option(
            "trafficmirror_redact_defaults",
            bool,
            True,
            "Mask Authorization, Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key "
            "unless trafficmirror_redact_header says otherwise; false records them as sent.",
        )
        loader.add_option(
            "trafficmirror_filter",
            Optional[str],  # mitmproxy matches typespecs against typing.Optional
            None,
            "Record only exchanges matching this mitmproxy filter expression, e.g. "
            "'~u /api & !~m OPTIONS' or '~c 500' (matched when the exchange ends, so "
            "response operators work); the others are not recorded and are counted as "
            "filtered. Unset: record everything.",
        )
        loader.add_option(
            "trafficmirror_metrics_host",
            str,
            "127.0.0.1",
            "Address of the /healthz, /readyz and /metrics endpoint.",
        )
        loader.add_option(
            "trafficmirror_metrics_port",
            Optional[int],  # mitmproxy matches typespecs against typing.Optional
            None,
            "Serve /healthz, /readyz (ready once the proxy listens and Kafka answered) "
            "and /metrics (Prometheus) on this port; off when unset.",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "trafficmirror_max_body_bytes" in updated:
            if opts.trafficmirror_max_body_bytes < 0:
                raise _options_error(
                    "trafficmirror_max_body_bytes must be 0 or more, "
                    f"not {opts.trafficmirror_max_body_bytes}"
                )
            self.max_body_bytes = opts.trafficmirror_max_body_bytes
        if "trafficmirror_flush_timeout" in updated:
            self.flush_timeout = _seconds(opts.trafficmirror_flush_timeout)
        if "trafficmirror_filter" in updated:
            try:
                self._filter = parse_flow_filter(opts.trafficmirror_filter)
            except TrafficMirrorError as exc:
                raise _options_error(f"trafficmirror_filter: {exc}") from None
        if updated & _REDACT_OPTIONS:
            self._configure_redaction()
        if updated & (_INFO_OPTIONS | _SINK_OPTIONS):
            self._configure_info()
        if updated & _SINK_OPTIONS:
            self._configure_sink()
        if updated & {"trafficmirror_metrics_port", "trafficmirror_metrics_host"}:
            self._configure_health()

    def _configure_info(self) -> None:
        opts = ctx.options
        recorder_id = opts.trafficmirror_recorder_id or default_recorder_id()
        self._keep_host = bool(getattr(opts, "keep_host_header", False))
        self._info = recorder_info(recorder_id)
        self._info_rewritten = recorder_info(recorder_id, redactions=[HOST_REWRITTEN])
        reverse = any(str(m).startswith("reverse:") for m in getattr(opts, "mode", ()))
        if reverse and not self._keep_host and not self._warned_host:
            self._warned_host = True
            logger.warning(
                "trafficmirror: keep_host_header is off, so mitmproxy rewrites the Host "
                "header to the upstream before the recorder sees it; events will carry "
                "the upstream's host (set keep_host_header=true to keep the client's)"
            )

    def _configure_redaction(self) -> None:
        opts = ctx.options
        try:
            redactor = Redactor.from_options(
                opts.trafficmirror_redact_header,
                opts.trafficmirror_redact_json,
                opts.trafficmirror_redact_key_file,
                opts.trafficmirror_redact_defaults,
            )
        except TrafficMirrorError as exc:
            raise _options_error(f"trafficmirror: {exc}") from None
        self.redactor = redactor
        rules = redactor.describe()
        if not rules:
            logger.warning(
                "trafficmirror: redaction is off: headers and bodies are recorded as sent"
            )
        else:
            logger.debug("trafficmirror: redacting %s", ", ".join(rules))

    def _configure_sink(self) -> None:
        opts = ctx.options
        self._close_sink()
        servers, topic = opts.trafficmirror_bootstrap_servers, opts.trafficmirror_topic
        if not servers or not topic:
            return
        try:
            settings = KafkaSettings.from_options(
                servers, opts.trafficmirror_kafka_property, opts.trafficmirror_kafka_config
            )
            registry = opts.trafficmirror_schema_registry_url
            codec = Codec(registry_url=registry, subject=f"{topic}-value" if registry else None)
            if registry:
                # Register the schema now, not on the first live request.
                codec.encode(_probe_event())
            sink = KafkaSink(settings, topic)
        except TrafficMirrorError as exc:
            raise _options_error(f"trafficmirror: {exc}") from None
        except Exception as exc:  # the registry client raises many kinds
            raise _options_error(f"trafficmirror: cannot set up the recorder: {exc}") from None
        self.codec, self.sink = codec, sink
        logger.info("trafficmirror: recording to topic %s on %s", topic, servers)

    def _configure_health(self) -> None:
        opts = ctx.options
        port = opts.trafficmirror_metrics_port
        if self._health is not None:
            self._health.close()
            self._health = None
        if port is None:
            return
        if not 0 <= port <= 65535:
            raise _options_error(f"trafficmirror_metrics_port {port} is out of range")
        state = HealthState()
        state.set_ready_check(self._ready)
        try:
            self._health = HealthServer(state, opts.trafficmirror_metrics_host, port).start()
        except OSError as exc:
            raise _options_error(
                f"trafficmirror: cannot serve metrics on "
                f"{opts.trafficmirror_metrics_host}:{port}: {exc.strerror or exc}"
            ) from None
        self._health_state = state

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
        if self._health_state is not None and self._beat_task is None:
            self._beat_task = asyncio.get_running_loop().create_task(self._beat(self._health_state))

    async def _beat(self, state: HealthState) -> None:
        # /healthz fails if mitmproxy's event loop stops running this.
        while True:
            state.beat()
            await asyncio.sleep(5)

    def done(self) -> None:
        if self._beat_task is not None:
            self._beat_task.cancel()
            self._beat_task = None
        had_sink = self.sink is not None or bool(self._stats)
        self._close_sink()
        if self._health is not None:
            self._health.close()
            self._health = None
        if had_sink:
            line = self.summary()
            stats = self.totals()
            lost = stats.dropped + stats.failed + self.convert_failed
            level = logging.INFO if lost == 0 else logging.WARNING
            logger.log(level, "%s", line)
            self._stats.clear()
            self.convert_failed = 0
            self.filtered = 0

    def _close_sink(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            self._stats.append(sink.close(self.flush_timeout))

    # -- hooks ----------------------------------------------------------------

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if RECORDED_MARK not in flow.metadata:
            self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        sink, codec = self.sink, self.codec
        if sink is None or codec is None or flow.is_replay:
            return
        try:
            flow.metadata[RECORDED_MARK] = True
            if self._filter is not None and not self._filter(flow):
                # Decided once: a later error hook must not record it either.
                self.filtered += 1
                FILTERED.inc()
                return
            info = self._info
            if not self._keep_host and isinstance(
                flow.client_conn.proxy_mode, mode_specs.ReverseMode
            ):
                info = self._info_rewritten
            event = flow_to_event(flow, self.max_body_bytes, info, self.redactor)
            encoded = codec.encode(event)
            if len(encoded.value) > sink.max_message_bytes - _MESSAGE_MARGIN:
                encoded = self._shrink(flow, info, event, len(encoded.value), sink, codec)
            sink.send(
                flow.client_conn.id.encode(),
                encoded.value,
                encoded.headers,
                int(flow.request.timestamp_start * 1000),
            )
        except Exception as exc:  # policy: recording never breaks the live flow
            self.convert_failed += 1
            CONVERT_FAILED.inc()
            now = time.monotonic()
            if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
                self._last_error_log = now
                logger.warning(
                    "trafficmirror: cannot record exchange %s: %s: %s (%d so far)",
                    flow.id,
                    type(exc).__name__,
                    exc,
                    self.convert_failed,
                )

    def _shrink(
        self,
        flow: http.HTTPFlow,
        info: RecorderInfo,
        event: HttpExchange,
        encoded_size: int,
        sink: KafkaSink,
        codec: Codec,
    ) -> Any:
        """Encode `flow` again with bodies cut so the event fits in a Kafka message."""
        limit = sink.max_message_bytes
        response = event["response"]
        messages = [event["request"], response["message"] if response is not None else None]
        sizes = [len(m["body"]) for m in messages if m is not None]
        budget = limit - _MESSAGE_MARGIN - (encoded_size - sum(sizes))
        cap = _fair_cap(sizes, budget)
        logger.debug(
            "trafficmirror: exchange %s is %d bytes encoded, over message.max.bytes %d; "
            "cutting its bodies to %d bytes",
            flow.id,
            encoded_size,
            limit,
            cap,
        )
        return codec.encode(flow_to_event(flow, cap, info, self.redactor))

    # -- reporting ------------------------------------------------------------

    def totals(self) -> SinkStats:
        """Counters of every sink this addon used (it makes a new one on reconfiguration)."""
        total = SinkStats()
        sinks = [*self._stats, *([self.sink.stats] if self.sink is not None else [])]
        for stats in sinks:
            for name in SinkStats.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    def summary(self) -> str:
        """The one-line exit summary."""
        t = self.totals()
        return (
            f"trafficmirror recorder summary: recorded={t.recorded} dropped={t.dropped} "
            f"failed={t.failed + self.convert_failed} (queue_full={t.queue_full} "
            f"undelivered={t.undelivered} delivery_failed={t.delivery_failed} "
            f"produce_failed={t.produce_failed} convert_failed={self.convert_failed}) "
            f"filtered={self.filtered}"
        )


def default_recorder_id() -> str:
    """`hostname:port` of the first proxy mode that listens (hostname:pid if unknown)."""
    host = socket.gethostname()
    try:
        for spec in ctx.options.mode:
            port = mode_specs.ProxyMode.parse(spec).listen_port(ctx.options.listen_port)
            if port:
                return f"{host}:{port}"
    except Exception:  # noqa: S110 (only a default name; fall through)
        pass
    return f"{host}:{os.getpid()}"


def _fair_cap(sizes: Sequence[int], budget: int) -> int:
    """The largest cap c with sum(min(s, c) for s in sizes) <= budget (0 if none fits)."""
    if budget <= 0:
        return 0
    ordered = sorted(sizes)
    for count, size in enumerate(ordered):
        share = budget // (len(ordered) - count)
        if size > share:
            return share
        budget -= size
    return ordered[-1] if ordered else 0


def _options_error(message: str) -> exceptions.OptionsError:
    # mitmproxy's exception classes carry no annotations; keep the ignore in one place.
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects NaN
        raise _options_error(
            f"trafficmirror_flush_timeout must be a number of seconds >= 0, not {value!r}"
        )
    return seconds


def _probe_event() -> dict[str, Any]:
    """A minimal valid event, encoded once at start to register the schema."""
    empty = {"headers": [], "body": b"", "body_truncated": False, "body_length": 0}
    return {
        "id": "probe",
        "request_start_us": 0,
        "client": {"host": "", "port": 0},
        "scheme": "http",
        "method": "GET",
        "authority": "",
        "path": b"/",
        "http_version": "HTTP/1.1",
        "request": empty,
        "recorder": recorder_info("probe"),
    }


def hooks_on_module(namespace: dict[str, Any], addon: object) -> None:
    """Make a script module (its `namespace`) the addon `addon`, for mitmproxy's `-s`.

    mitmproxy walks its addon chain for every hook of every exchange, and for a
    script that is script loader, script, module and then the module's
    `addons`; each step looks the hook up. So the addon's hooks become the
    module's own attributes (its bound methods: here those of one `Recorder`,
    in bench/scripts/floor_addon.py a benchmark's) and `addons` is empty: one
    step less per hook. Every other hook name is `None` ("no
    handler", as mitmproxy's own lookup reads it), because a name a module
    lacks costs CPython two AttributeErrors with formatted messages (about
    0.8 µs on 3.11, 16 times a found name). Both together took about 1 % of a
    proxy's instructions per exchange (`bench/recorder.py --instructions`).
    `add_log` is left out: mitmproxy warns about any addon that has it.
    """
    # Hooks register themselves when the module defining them is imported.
    import mitmproxy.addonmanager  # noqa: F401
    import mitmproxy.proxy.layers  # noqa: F401
    import mitmproxy.proxy.server_hooks  # noqa: F401

    for name in hooks.all_hooks:
        if name != "add_log":
            namespace[name] = getattr(addon, name, None)
    namespace["addons"] = []


#: The recorder of this module when mitmproxy loads it as a script (`-s`).
script_recorder = Recorder()
hooks_on_module(globals(), script_recorder)
