"""`trafficmirror record`: the recorder, a reverse proxy that records to Kafka.

The command validates what it can before anything starts (Kafka settings, the
--listen address, the --upstream URL or --mirror (exactly one of them), and that
the proxy would neither loop to itself nor share its port with /metrics), then
hands over to `recorder.run` (with --workers N, to the supervisor in
`recorder.workers`), imported only now because it loads mitmproxy. The
recorder's extra options (TLS, redaction, ...) come from `cli.recording`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from trafficmirror.cli.common import (
    build_settings,
    check_url,
    kafka_options,
    metrics_options,
    parse_listen,
)
from trafficmirror.cli.recording import recorder_extra_options


@click.command()
@kafka_options
@metrics_options
@click.option(
    "--upstream",
    "-u",
    envvar="TRAFFICMIRROR_UPSTREAM",
    metavar="URL",
    help="The app to proxy to, e.g. http://127.0.0.1:8080 (env TRAFFICMIRROR_UPSTREAM). "
    "Required, unless --mirror.",
)
@click.option(
    "--mirror",
    is_flag=True,
    envvar="TRAFFICMIRROR_MIRROR",
    help="Be the target of a mirror rule (nginx mirror, Envoy/Istio request mirroring, "
    "Gateway API RequestMirror) instead of a proxy in the request path: answer every "
    "request at once with 200 and an empty body, contact no upstream (no --upstream), "
    "and record each request with no production response (capture mirror; compare "
    "replays against --baseline). Envoy's -shadow Host suffix is removed "
    "(env TRAFFICMIRROR_MIRROR).",
)
@click.option(
    "--listen",
    "-l",
    default="127.0.0.1:8081",
    show_default=True,
    envvar="TRAFFICMIRROR_LISTEN",
    metavar="HOST:PORT",
    help="Where clients connect (env TRAFFICMIRROR_LISTEN).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(0),
    default=1024 * 1024,
    show_default=True,
    help="Record at most this many bytes of each body: a body up to it is kept whole, a "
    "longer one is cut, flagged truncated and counted (truncated= in the summary, a "
    "warning now and then). The Kafka producer's message.max.bytes is raised to hold two "
    "bodies at the cap plus 272 KiB (2,375,680 bytes for the default); the topic must accept "
    "messages that large, and a smaller -X message.max.bytes is refused.",
)
@click.option(
    "--recorder-id",
    envvar="TRAFFICMIRROR_RECORDER_ID",
    help="Name written into every event (default: hostname:port).",
)
@click.option(
    "--flush-timeout",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds to wait on shutdown for queued events to reach Kafka.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds to let exchanges in flight finish after the recorder "
    "stops accepting connections; requests arriving on open connections meanwhile are "
    "answered (HTTP/1 with Connection: close), and exchanges unfinished at the end are "
    "recorded with an error. A second signal stops at once. Give the pod a grace period "
    "longer than this plus --flush-timeout.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="TRAFFICMIRROR_WORKERS",
    help="Recorder processes sharing the --listen port (SO_REUSEPORT, Linux): the kernel "
    "spreads new connections over them, so the sidecar can use N cores (give it a CPU limit "
    "of N or more; each costs a recorder's memory). Each has its own Kafka producer and "
    "recorder id (ID/w1, ID/w2, ...); one --metrics-port and one summary for all. A worker "
    "that dies stops the others and the command fails. 1: no extra process "
    "(env TRAFFICMIRROR_WORKERS).",
)
@recorder_extra_options
def record(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    upstream: str | None,
    mirror: bool,
    listen: str,
    max_body_bytes: int,
    recorder_id: str | None,
    flush_timeout: float,
    drain_timeout: float,
    workers: int,
    recorder_extras: dict[str, Any],
) -> None:
    """Run the recorder: a reverse proxy in front of UPSTREAM that records to Kafka.

    Clients talk to --listen as if it were the app; every exchange is forwarded
    unchanged (the client's Host header included) and, in the background, written
    to TOPIC, one event per exchange, keyed by client connection. Kafka trouble
    never delays or fails a live request: when the local queue is full, events are
    dropped and counted. On SIGTERM/SIGINT the recorder stops accepting
    connections, lets exchanges in flight finish (--drain-timeout), flushes queued
    events for at most --flush-timeout seconds and logs one summary line in which
    seen = recorded + dropped + failed. If UPSTREAM refuses connections, clients
    get a 502 and the error is recorded.

    Clients may speak plain HTTP or TLS (HTTP/1.1 or HTTP/2) on the same port;
    see --confdir and --tls-cert. Secrets are redacted before an event leaves
    the process: the default headers are masked, more with --redact-header and
    --redact-json; each event lists what was redacted.

    With --mirror it sits off the request path, as the target of a mirror
    rule: the live request never waits for it, and there is no production
    response to record.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    check_message_size(max_body_bytes, settings.properties)
    host, port = parse_listen(listen)
    if mirror and upstream is not None:
        raise click.BadParameter(
            "not with --mirror: a mirror target answers every request itself and "
            "contacts no upstream (unset TRAFFICMIRROR_UPSTREAM too)",
            param_hint="--upstream",
        )
    if not mirror and upstream is None:
        raise click.UsageError(
            "Missing option '--upstream' (the app to proxy to), or --mirror to record "
            "a mirror rule's copies"
        )
    if upstream is not None:
        check_url(upstream, "--upstream")
    check_record_addresses(upstream, host, port, metrics_host, metrics_port)
    from recorder.config import RecordConfig
    from recorder.workers import run_record

    run_record(
        RecordConfig(
            settings=settings,
            topic=topic,
            upstream=upstream,
            mirror=mirror,
            listen_host=host,
            listen_port=port,
            max_body_bytes=max_body_bytes,
            recorder_id=recorder_id,
            flush_timeout=flush_timeout,
            drain_timeout=drain_timeout,
            schema_registry_url=schema_registry_url,
            metrics_host=metrics_host,
            metrics_port=metrics_port,
            workers=workers,
            **recorder_extras,
        )
    )


def check_message_size(max_body_bytes: int, properties: Mapping[str, str]) -> None:
    """Refuse a --max-body-bytes that the Kafka message size cannot hold (`recorder.fit`)."""
    from recorder.fit import message_limit
    from trafficmirror.plumbing.errors import ConfigError

    try:
        message_limit(max_body_bytes, properties)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-body-bytes") from None


def _same_address(host_a: str, port_a: int, host_b: str, port_b: int) -> bool:
    """True if the two addresses can be the same socket (wildcards match any host)."""
    loopback = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}
    a, b = loopback.get(host_a, host_a), loopback.get(host_b, host_b)
    wildcard = {"", "0.0.0.0", "::"}  # noqa: S104 (compared, not bound)
    return port_a == port_b != 0 and (a == b or a in wildcard or b in wildcard)


def check_record_addresses(
    upstream: str | None, host: str, port: int, metrics_host: str, metrics_port: int | None
) -> None:
    """Refuse a recorder that would proxy to itself, or share its port with /metrics."""
    from urllib.parse import urlsplit

    if upstream is not None:
        parts = urlsplit(upstream)
        upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        if _same_address(parts.hostname or "", upstream_port, host, port):
            raise click.BadParameter(
                f"{upstream} is the recorder's own --listen address: every request would loop",
                param_hint="--upstream",
            )
    if metrics_port is not None and _same_address(metrics_host, metrics_port, host, port):
        raise click.BadParameter(
            f"port {metrics_port} is also the proxy's --listen port", param_hint="--metrics-port"
        )
