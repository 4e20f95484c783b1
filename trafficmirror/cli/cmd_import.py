"""`trafficmirror import`: a HAR or GoReplay file into the traffic topic, as events.

The whole file is read and checked first (`interchange.har` / `gor`): a
malformed one fails with one line naming the entry or payload, exit code 2,
and nothing is written. Then each exchange goes through the recorder's
redaction (`recorder.redact.Redactor`, the default header list unless
`--no-redaction`; the CLI applies it because `interchange` sits beside
`recorder` and may not import it), is cut at `--max-body-bytes` like a
recorded body, and is produced with its original time (Kafka timestamp =
request start) and a key per client connection where the file has one (the
exchange id otherwise). Import waits for every acknowledgement; when some
fail it says how many of how many were written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import click

from trafficmirror.cli.common import build_settings, kafka_options

if TYPE_CHECKING:
    from recorder.redact import Redactor
    from schemas.records import HttpExchange, Message

logger = logging.getLogger(__name__)

FORMATS = ("har", "gor")


@click.command(name="import")
@kafka_options
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    help="File format: har (HTTP Archive 1.2, e.g. saved from browser devtools) or gor "
    "(GoReplay; .gz is gunzipped). Default: from the file name (.har, .gor, .gor.gz).",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--max-body-bytes",
    type=click.IntRange(0),
    default=1024 * 1024,
    show_default=True,
    help="Keep at most this many bytes of each body, like record; longer ones are flagged "
    "truncated.",
)
@click.option(
    "--redact-header",
    "redact_headers",
    multiple=True,
    metavar="NAME[=MODE]",
    help="Also redact this header (mode drop, mask, hmac or jwt-claims; default mask), as "
    "record does; repeatable. Authorization, Proxy-Authorization, Cookie, Set-Cookie and "
    "X-Api-Key are masked by default.",
)
@click.option(
    "--redact-json",
    "redact_json",
    multiple=True,
    metavar="PATH[=MODE]",
    help="Redact values at this JSON path in bodies, e.g. '$.password=drop'; repeatable.",
)
@click.option(
    "--no-redaction",
    is_flag=True,
    help="Write the file's headers and bodies as they are: no default redaction (the file "
    "holds secrets you are allowed to put into Kafka).",
)
def import_(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    fmt: str | None,
    file: str,
    max_body_bytes: int,
    redact_headers: tuple[str, ...],
    redact_json: tuple[str, ...],
    no_redaction: bool,
) -> None:
    """Write the exchanges of a HAR or GoReplay (.gor) file into the traffic topic.

    Each exchange becomes an event with its original timestamps, so replay (at the
    recorded pace or --speed), comparison and report work on it as on recorded
    traffic; its recorder id says where it came from (import:har:FILE). A file
    without responses (a GoReplay request capture) gives events without one
    (capture mirror: compare against a baseline). The file is checked whole before
    anything is written.
    """
    fmt = fmt or _guess(file)
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    redactor = _redactor(redact_headers, redact_json, no_redaction)
    from interchange import gor, har

    events = har.read(file) if fmt == "har" else gor.read(file)
    for event in events:
        _prepare(event, redactor, max_body_bytes)
    written = _produce(settings, topic, schema_registry_url, events)
    click.echo(f"imported {written} exchanges from {file} into {topic}", err=True)


def _guess(file: str) -> str:
    low = file.lower()
    if low.endswith(".har"):
        return "har"
    if low.endswith((".gor", ".gor.gz", ".gz")):
        return "gor"
    raise click.BadParameter(
        f"cannot tell the format from {file!r}: give --format har or gor", param_hint="--format"
    )


def _redactor(headers: tuple[str, ...], json_rules: tuple[str, ...], off: bool) -> Redactor | None:
    if off:
        if headers or json_rules:
            raise click.BadParameter(
                "--no-redaction cannot be combined with --redact-header/--redact-json",
                param_hint="--no-redaction",
            )
        return None
    from recorder.redact import Redactor
    from trafficmirror.plumbing.errors import ConfigError

    try:
        return Redactor.from_options(headers, json_rules)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="redaction") from None


def _cut(msg: Message, limit: int) -> None:
    if len(msg["body"]) > limit:
        msg["body"] = msg["body"][:limit]
        msg["body_truncated"] = True


def _prepare(event: HttpExchange, redactor: Redactor | None, limit: int) -> None:
    """Redact (the recorder's rules) and cut the bodies of one imported event, in place."""
    from interchange.exchange import pairs

    messages: list[tuple[str, Message]] = [("request", event["request"])]
    if event["response"] is not None:
        messages.append(("response", event["response"]["message"]))
    notes: list[str] = []
    for where, msg in messages:
        if redactor is not None:
            msg["headers"] = redactor.redact_headers(pairs(msg["headers"]), where, notes)
            if msg["trailers"] is not None:
                msg["trailers"] = redactor.redact_headers(pairs(msg["trailers"]), where, notes)
            body = redactor.redact_body(msg["body"], msg["headers"], limit, where, notes)
            if body is None:  # dropped, fail closed: keep only its length
                msg["body"], msg["body_truncated"] = b"", True
            elif body is not msg["body"]:
                msg["body"] = body
                if not msg["body_truncated"]:
                    msg["body_length"] = len(body)
        _cut(msg, limit)
    event["recorder"]["redactions"] += notes


def _key(event: HttpExchange) -> bytes:
    client = event["client"]
    if client["host"]:
        return f"{client['host']}:{client['port']}".encode()
    return event["id"].encode()


def _produce(
    settings: Any, topic: str, registry_url: str | None, events: list[HttpExchange]
) -> int:
    """Produce every event and wait for the acknowledgements; returns how many were written."""
    from confluent_kafka import KafkaError, Producer

    from schemas.codec import Codec
    from trafficmirror.plumbing.clients import Consumer
    from trafficmirror.plumbing.errors import TrafficMirrorError
    from trafficmirror.plumbing.kafka import topic_partitions
    from trafficmirror.plumbing.logs import DebugLog

    codec = Codec(registry_url=registry_url, subject=f"{topic}-value" if registry_url else None)
    failures: list[str] = []
    delivered = 0

    def report(err: KafkaError | None, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            failures.append(err.str())

    probe = Consumer(settings.consumer_config(None))
    try:  # fails at once, with librdkafka's reason, when the cluster refuses us
        topic_partitions(probe, topic, settings.bootstrap_servers)
    finally:
        probe.close()
    config = settings.producer_config()
    # librdkafka's own log lines go to `logging` at debug level, not straight to stderr.
    config["logger"] = DebugLog(logging.getLogger(f"{__name__}.librdkafka"))
    producer = Producer(config)
    for event in events:
        encoded = codec.encode(event)
        while True:
            try:
                producer.produce(
                    topic,
                    encoded.value,
                    _key(event),
                    headers=cast(Any, encoded.headers),
                    timestamp=event["request_start_us"] // 1000,
                    on_delivery=report,
                )
                break
            except BufferError:  # the local queue is full: wait for the broker, never drop
                producer.poll(0.5)
        producer.poll(0)
    left = producer.flush(60)
    if failures or left:
        lost = len(failures) + left
        why = f": {failures[0]}" if failures else " (not acknowledged within 60 s)"
        raise TrafficMirrorError(
            f"wrote {delivered} of {len(events)} exchanges to {topic}; {lost} failed{why}"
        )
    return delivered
