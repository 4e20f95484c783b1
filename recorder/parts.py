"""The recorder's parts, made from its mitmproxy options: redactor, event info, sink.

`Recorder.configure` (`recorder.addon`) calls these when the options they read
change: `redactor()` for the `trafficmirror_redact_*` options, `infos()` for
the `RecorderInfo` every event carries (with the note for a Host mitmproxy
rewrote in reverse mode), `open_sink()` for the producer and its codec (the
schema registered first, the message size from the body cap). Each raises
mitmproxy's `OptionsError` with one line for a bad value, so a wrong flag
stops the recorder at start and never a live request. Kept apart from the
addon so that its file is the live path, hook by hook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from recorder import fit, options
from recorder.event import CAPTURE_MIRROR, CAPTURE_PROXY, probe_event, recorder_info
from recorder.options import options_error
from recorder.redact import Redactor
from recorder.sink import KafkaSink
from schemas.codec import Codec
from schemas.records import RecorderInfo
from trafficmirror.plumbing.errors import TrafficMirrorError
from trafficmirror.plumbing.kafka import KafkaSettings

logger = logging.getLogger(__name__)

#: Redaction note for events whose Host was rewritten to the upstream by mitmproxy.
HOST_REWRITTEN = "request.header:host=upstream"


def non_negative(opts: Any, name: str) -> int:
    """Option `name` (a byte count); `OptionsError` when it is below 0."""
    value: int = getattr(opts, name)
    if value < 0:
        raise options_error(f"{name} must be 0 or more, not {value}")
    return value


def redactor(opts: Any) -> Redactor:
    """The redactor the `trafficmirror_redact_*` options ask for (logged once)."""
    try:
        made = Redactor.from_options(
            opts.trafficmirror_redact_header,
            opts.trafficmirror_redact_json,
            opts.trafficmirror_redact_key_file,
            opts.trafficmirror_redact_defaults,
            param_specs=opts.trafficmirror_redact_param,
        )
    except TrafficMirrorError as exc:
        raise options_error(f"trafficmirror: {exc}") from None
    rules = made.describe()
    if not rules:
        logger.warning("trafficmirror: redaction is off: headers and bodies are recorded as sent")
    else:
        logger.debug("trafficmirror: redacting %s", ", ".join(rules))
    return made


@dataclass(frozen=True)
class Infos:
    """The `RecorderInfo` of events, as recorded and with the Host-rewritten note."""

    plain: RecorderInfo
    rewritten: RecorderInfo
    #: `keep_host_header`: mitmproxy keeps the client's Host, so no event needs the note.
    keep_host: bool
    #: A reverse mode listens without `keep_host_header` (worth a warning).
    host_lost: bool


def infos(opts: Any) -> Infos:
    """What every event says about its recorder (`record --mirror`: no production response)."""
    # In reverse mode mitmproxy rewrites Host (or :authority) to the upstream
    # before any addon runs, unless keep_host_header is set: the client's Host
    # is then gone, so such events say so in their redactions (HOST_REWRITTEN).
    recorder_id = opts.trafficmirror_recorder_id or options.default_recorder_id()
    keep_host = bool(getattr(opts, "keep_host_header", False))
    capture = CAPTURE_MIRROR if opts.trafficmirror_mirror else CAPTURE_PROXY
    reverse = any(str(m).startswith("reverse:") for m in getattr(opts, "mode", ()))
    return Infos(
        plain=recorder_info(recorder_id, capture=capture),
        rewritten=recorder_info(recorder_id, redactions=[HOST_REWRITTEN], capture=capture),
        keep_host=keep_host,
        host_lost=reverse and not keep_host,
    )


def open_sink(opts: Any, max_body_bytes: int) -> tuple[Codec, KafkaSink] | None:
    """The codec and producer the options name; None without servers or topic."""
    servers, topic = opts.trafficmirror_bootstrap_servers, opts.trafficmirror_topic
    if not servers or not topic:
        return None
    try:
        settings = KafkaSettings.from_options(
            servers, opts.trafficmirror_kafka_property, opts.trafficmirror_kafka_config
        )
        registry = opts.trafficmirror_schema_registry_url
        codec = Codec(registry_url=registry, subject=f"{topic}-value" if registry else None)
        if registry:
            # Register the schema now, not on the first live request.
            codec.encode(probe_event())
        # Sized from the cap, so a body up to it is recorded whole (recorder.fit).
        limit = fit.message_limit(max_body_bytes, settings.properties)
        sink = KafkaSink(settings, topic, **{"message.max.bytes": limit})
    except TrafficMirrorError as exc:
        raise options_error(f"trafficmirror: {exc}") from None
    except Exception as exc:  # the registry client raises many kinds
        raise options_error(f"trafficmirror: cannot set up the recorder: {exc}") from None
    logger.info(
        "trafficmirror: recording to topic %s on %s (messages up to %d bytes)",
        topic,
        servers,
        limit,
    )
    return codec, sink
