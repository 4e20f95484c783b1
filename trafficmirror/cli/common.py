"""Options and checks shared by several commands: Kafka, metrics, senders.

Every command that touches Kafka takes the same connection options (plus the
TLS/SASL flags of `cli.kafka`) and turns them into one `KafkaSettings` with
`build_settings`; the replaying commands share the sender options; the value
checks (`check_url`, `parse_listen`, `parse_end_offset`) answer bad input with
`click.BadParameter`, one line and exit code 2, before anything connects.
Kept apart from the group in `main.py`, so a command module (`session.py` too)
imports them without importing the CLI it is wired into. Only click is
imported at module level; the plumbing is loaded when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from trafficmirror.cli.kafka import kafka_security_options

if TYPE_CHECKING:
    from trafficmirror.plumbing.kafka import KafkaSettings

F = TypeVar("F", bound=Callable[..., Any])


def kafka_options(func: F) -> F:
    """Options every command that reads or writes traffic events takes."""
    func = click.option(
        "--schema-registry-url",
        envvar="TRAFFICMIRROR_SCHEMA_REGISTRY_URL",
        metavar="URL",
        help="Confluent Schema Registry: write its wire format instead of Avro "
        "single-object encoding, and resolve its schema ids when reading.",
    )(func)
    return kafka_connection_options(func)


def kafka_connection_options(func: F) -> F:
    """Where the cluster is, how to talk to it, and the traffic topic."""
    return _kafka_options(func, with_topic=True)


def kafka_cluster_options(func: F) -> F:
    """Where the cluster is and how to talk to it (the TLS/SASL flags: see cli.kafka)."""
    return _kafka_options(func, with_topic=False)


def _kafka_options(func: F, with_topic: bool) -> F:
    func = kafka_security_options(func)
    options = [
        click.option(
            "--bootstrap-servers",
            "-b",
            envvar=["TRAFFICMIRROR_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"],
            metavar="HOST:PORT[,…]",
            help="Kafka bootstrap servers; required: this flag, env "
            "TRAFFICMIRROR_BOOTSTRAP_SERVERS or KAFKA_BOOTSTRAP_SERVERS, bootstrap.servers in "
            "--kafka-config, or bootstrap-servers in the --config file.  [required]",
        ),
        click.option(
            "--topic",
            "-t",
            envvar="TRAFFICMIRROR_TOPIC",
            required=True,
            callback=check_topic,
            help="Traffic topic holding the recorded exchanges (env TRAFFICMIRROR_TOPIC).",
        ),
        click.option(
            "-X",
            "kafka_properties",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any librdkafka property, e.g. -X security.protocol=SASL_SSL; repeatable.",
        ),
        click.option(
            "--kafka-config",
            envvar="TRAFFICMIRROR_KAFKA_CONFIG",
            type=click.Path(dir_okay=False),
            help="Properties file of librdkafka settings (key=value lines); the security "
            "flags (TLS, SASL) and -X win over it (env TRAFFICMIRROR_KAFKA_CONFIG).",
        ),
    ]
    if not with_topic:
        del options[1]
    for option in reversed(options):
        func = option(func)
    return func


def check_topic(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A legal Kafka topic name: 1-249 of a-z A-Z 0-9 . _ - (not . or ..)."""
    import re

    if value is not None and (
        not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in (".", "..")
    ):
        raise click.BadParameter(
            f"{value!r} is not a Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-')"
        )
    return value


def metrics_options(func: F) -> F:
    """Options for the /healthz, /readyz and /metrics endpoint."""
    func = click.option(
        "--metrics-host",
        envvar="TRAFFICMIRROR_METRICS_HOST",
        default="127.0.0.1",
        show_default=True,
        help="Address the health/metrics endpoint listens on (0.0.0.0 in a container).",
    )(func)
    func = click.option(
        "--metrics-port",
        envvar="TRAFFICMIRROR_METRICS_PORT",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve /healthz, /readyz and /metrics on this port; off when not given.",
    )(func)
    return func


def build_settings(
    bootstrap_servers: str | None, kafka_properties: tuple[str, ...], kafka_config: str | None
) -> KafkaSettings:
    """KafkaSettings from the shared options; bad input raises click.BadParameter."""
    from trafficmirror.plumbing.errors import ConfigError
    from trafficmirror.plumbing.kafka import KafkaSettings, check_client_config

    try:
        settings = KafkaSettings.from_options(bootstrap_servers, kafka_properties, kafka_config)
        check_client_config(settings)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="Kafka settings") from None
    return settings


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `PORT` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen") from None
    if not 0 <= number <= 65535:
        raise click.BadParameter(f"port {number} is out of range", param_hint="--listen")
    return host, number


def check_url(value: str, param: str) -> str:
    """An absolute http(s) URL with a host, or BadParameter."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL", param_hint=param)
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise click.BadParameter(f"{value!r} has a bad port", param_hint=param) from None
    return value


def sender_options(func: F) -> F:
    """Options of everything that sends to a shadow."""
    options = [
        click.option(
            "--target",
            envvar="TRAFFICMIRROR_TARGET",
            metavar="URL",
            help="Shadow service base URL; its scheme, host and port replace the recorded "
            "ones. Required unless --target-map is given; with one, the target of the "
            "authorities the map does not name (env TRAFFICMIRROR_TARGET).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1),
            default=64,
            show_default=True,
            envvar="TRAFFICMIRROR_CONCURRENCY",
            help="Requests in flight to the shadow at most (the baseline has its own cap, "
            "--baseline-concurrency).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0, min_open=True),
            default=30.0,
            show_default=True,
            help="Seconds a shadow request may take before it counts as an error.",
        ),
        click.option(
            "--http-version",
            type=click.Choice(["auto", "1.1", "2"]),
            default="auto",
            show_default=True,
            envvar="TRAFFICMIRROR_HTTP_VERSION",
            help="HTTP version of the replayed requests. auto: HTTP/2 for exchanges recorded "
            "as HTTP/2 (over https negotiated by ALPN, HTTP/1.1 when the shadow does not offer "
            "h2; over http as h2c with prior knowledge, HTTP/1.1 when the shadow answers in "
            "HTTP/1.1), HTTP/1.1 for the rest. 1.1: everything as HTTP/1.1. 2: everything as "
            "HTTP/2 (a shadow without it gets nothing: an error per request).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def parse_end_offset(value: str) -> int | None:
    """A whole number, or `end` (None) for the high watermark at start."""
    if value == "end":
        return None
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an offset nor 'end'", param_hint="--end-offset"
        ) from None
    if number < 0:
        raise click.BadParameter("offsets are never negative", param_hint="--end-offset")
    return number
