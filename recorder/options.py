"""The recorder addon's mitmproxy options: their types, defaults and help texts.

mitmproxy shows these help texts (`mitmdump --options`), so they are the user
documentation of `mitmdump -s recorder/addon.py`; `trafficmirror record` sets
the same options from its flags (`recorder.config.mitmproxy_options`). The
addon declares them in `load()` and reads them in `configure()`, where a bad
value is an `OptionsError`, mitmproxy's one-line refusal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any, Optional

from mitmproxy import ctx, exceptions
from mitmproxy.proxy import mode_specs

from recorder.capture import DEFAULT_MAX_BUFFERED_BYTES

#: Options whose change means a new producer (and codec).
SINK_OPTIONS = frozenset(
    {
        "trafficmirror_bootstrap_servers",
        "trafficmirror_topic",
        "trafficmirror_kafka_property",
        "trafficmirror_kafka_config",
        "trafficmirror_schema_registry_url",
        # The producer's message.max.bytes is sized from the cap (recorder.fit).
        "trafficmirror_max_body_bytes",
    }
)
#: Options that change what every event's RecorderInfo says.
INFO_OPTIONS = frozenset(
    {"trafficmirror_recorder_id", "keep_host_header", "mode", "listen_port", "trafficmirror_mirror"}
)
#: Options of the redaction rules.
REDACT_OPTIONS = frozenset(
    {
        "trafficmirror_redact_header",
        "trafficmirror_redact_json",
        "trafficmirror_redact_param",
        "trafficmirror_redact_key_file",
        "trafficmirror_redact_defaults",
    }
)
#: Options of the /healthz, /readyz and /metrics endpoint.
HEALTH_OPTIONS = frozenset({"trafficmirror_metrics_port", "trafficmirror_metrics_host"})


def declare(loader: Any) -> None:
    """Add the recorder's options to mitmproxy (the addon's `load()`)."""
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
        "Record at most this many bytes of each request and response body; a body up to "
        "it is kept whole, a longer one is cut, flagged body_truncated with its original "
        "length kept, and counted (truncated). The Kafka producer's message.max.bytes is "
        "sized to hold two bodies at the cap plus 272 KiB (a smaller message.max.bytes "
        "set in trafficmirror_kafka_property is refused); the topic must accept messages "
        "that large.",
    )
    loader.add_option(
        "trafficmirror_max_buffered_bytes",
        int,
        DEFAULT_MAX_BUFFERED_BYTES,
        "Body bytes the recorder keeps at most for all exchanges in flight together "
        "(bodies stream through; each keeps at most trafficmirror_max_body_bytes for its "
        "event). When it is reached, further bodies are recorded cut, flagged "
        "body_truncated with their full length, and counted as budget_cut; live traffic is "
        "never slowed or failed. Default 64 MiB.",
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
        "trafficmirror_drain_timeout",
        str,
        "5",
        "Seconds (may be fractional) a stopping recorder lets exchanges in flight finish: "
        "it stops accepting connections, answers what arrives on open ones (HTTP/1 "
        "responses marked Connection: close), closes idle connections, and records "
        "exchanges still unfinished then with the error 'recorder stopped before the "
        "exchange finished'. Under mitmdump this runs when mitmproxy shuts down.",
    )
    loader.add_option(
        "trafficmirror_redact_header",
        Sequence[str],
        [],
        "Header to redact in requests, responses and trailers before the event is "
        "written, as NAME or NAME=MODE; MODE is mask (value becomes ***, the default), "
        "drop (header removed), hmac (hmac-sha256:<hex>, equal values stay equal; "
        "needs trafficmirror_redact_key_file or $TRAFFICMIRROR_REDACT_KEY) or jwt-claims "
        "(a JWT keeps its header and claims, the signature is emptied; other values are "
        "masked). Repeat for "
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
        "trafficmirror_redact_param",
        Sequence[str],
        [],
        "Query parameter and form field (application/x-www-form-urlencoded and "
        "multipart/form-data, requests and responses) to redact by name, as NAME or "
        "NAME=MODE; MODE is mask (value becomes ***, the default), drop (the field is "
        "removed) or hmac (as for trafficmirror_redact_header). Names are compared "
        "percent-decoded and without case; the path stays byte for byte where nothing "
        "matched. Repeat for several; also changes the mode of a default name.",
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
        "Mask Authorization, Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key, and "
        "the usual secret query parameters and form fields (access_token, api_key, "
        "apikey, password, secret, signature, token, X-Amz-Signature, ...: "
        "recorder.redactrules.DEFAULT_PARAMS) unless trafficmirror_redact_header or "
        "trafficmirror_redact_param says otherwise; false records them as sent.",
    )
    loader.add_option(
        "trafficmirror_filter",
        Optional[str],  # mitmproxy matches typespecs against typing.Optional
        None,
        "Record only exchanges matching this mitmproxy filter expression, e.g. "
        "'~u /api & !~m OPTIONS' or '~c 500' (matched when the exchange ends, so "
        "response operators work; body operators match nothing, since bodies stream "
        "through unkept); the others are not recorded and are counted as "
        "filtered. Unset: record everything.",
    )
    loader.add_option(
        "trafficmirror_mirror",
        bool,
        False,
        "Be the target of a mirror rule (nginx mirror, Envoy/Istio request mirroring, "
        "Gateway API RequestMirror): answer every request at once with 200 and an empty "
        "body, contact no upstream, and record the request with no response (capture "
        "mirror). Needs --mode reverse:http://mirror.invalid (never contacted) and "
        "keep_host_header=true; Envoy's -shadow Host suffix is removed.",
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


def options_error(message: str) -> exceptions.OptionsError:
    """mitmproxy's refusal of an option value, with `message` as its one line."""
    # mitmproxy's exception classes carry no annotations; keep the ignore in one place.
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


def seconds(value: str, name: str = "trafficmirror_flush_timeout") -> float:
    """Option `name`'s value as seconds; `OptionsError` unless a number >= 0."""
    try:
        parsed = float(value)
    except ValueError:
        parsed = -1.0
    if not parsed >= 0:  # also rejects NaN
        raise options_error(f"{name} must be a number of seconds >= 0, not {value!r}")
    return parsed


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
