"""The `trafficmirror` command line.

Only wiring lives here: options are parsed and validated (bad input is a
`click.BadParameter`, one line, exit code 2), then the command's module is
imported (lazily, so `--help` stays fast and never loads mitmproxy) and called.
Errors the package raises on purpose (`TrafficMirrorError`) become one line on
stderr; nothing the user can cause prints a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from trafficmirror import __version__
from trafficmirror.cli.common import (
    build_settings,
    check_url,
    kafka_cluster_options,
    kafka_connection_options,
    kafka_options,
    metrics_options,
    parse_end_offset,
    parse_listen,
    sender_options,
)
from trafficmirror.cli.comparison import comparison_options
from trafficmirror.cli.guard import guardrail_options
from trafficmirror.cli.pace import pace_options
from trafficmirror.cli.recording import recorder_extra_options
from trafficmirror.cli.safety import safety_options
from trafficmirror.cli.selection import check_window_or_offsets, selection_options
from trafficmirror.cli.session import session
from trafficmirror.plumbing.errors import TrafficMirrorError

F = TypeVar("F", bound=Callable[..., Any])


def _same_address(host_a: str, port_a: int, host_b: str, port_b: int) -> bool:
    """True if the two addresses can be the same socket (wildcards match any host)."""
    loopback = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}
    a, b = loopback.get(host_a, host_a), loopback.get(host_b, host_b)
    wildcard = {"", "0.0.0.0", "::"}  # noqa: S104 (compared, not bound)
    return port_a == port_b != 0 and (a == b or a in wildcard or b in wildcard)


def check_record_addresses(
    upstream: str, host: str, port: int, metrics_host: str, metrics_port: int | None
) -> None:
    """Refuse a recorder that would proxy to itself, or share its port with /metrics."""
    from urllib.parse import urlsplit

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


# -- the group ----------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trafficmirror")
@click.option("-v", "--verbose", count=True, help="Show debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """Record live HTTP traffic into Kafka and replay it to shadow services.

    A recorder (mitmproxy reverse proxy) writes every exchange as an Avro event to
    a Kafka topic without ever slowing the live path; replayer workers consume the
    topic and re-send the traffic to a shadow service. Run `trafficmirror demo` to
    see the whole pipeline on an in-memory broker.
    """
    from trafficmirror.plumbing import logs

    logs.setup(verbose, quiet)


@cli.command()
@kafka_options
@metrics_options
@click.option(
    "--upstream",
    "-u",
    required=True,
    envvar="TRAFFICMIRROR_UPSTREAM",
    metavar="URL",
    help="The app to proxy to, e.g. http://127.0.0.1:8080 (env TRAFFICMIRROR_UPSTREAM).",
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
    help="Record at most this many bytes of each body; longer ones are flagged truncated.",
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
@recorder_extra_options
def record(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    upstream: str,
    listen: str,
    max_body_bytes: int,
    recorder_id: str | None,
    flush_timeout: float,
    recorder_extras: dict[str, Any],
) -> None:
    """Run the recorder: a reverse proxy in front of UPSTREAM that records to Kafka.

    Clients talk to --listen as if it were the app; every exchange is forwarded
    unchanged (the client's Host header included) and, in the background, written
    to TOPIC, one event per exchange, keyed by client connection. Kafka trouble
    never delays or fails a live request: when the local queue is full, events are
    dropped and counted. On SIGTERM/SIGINT queued events are flushed for at most
    --flush-timeout seconds and one summary line is logged: recorded, dropped,
    failed. If UPSTREAM refuses connections, clients get a 502 and the error is
    recorded.

    Clients may speak plain HTTP or TLS (HTTP/1.1 or HTTP/2) on the same port;
    see --confdir and --tls-cert. Secrets are redacted before an event leaves
    the process: the default headers are masked, more with --redact-header and
    --redact-json; each event lists what was redacted.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    host, port = parse_listen(listen)
    check_url(upstream, "--upstream")
    check_record_addresses(upstream, host, port, metrics_host, metrics_port)
    from recorder.run import run_recorder

    run_recorder(
        settings=settings,
        topic=topic,
        upstream=upstream,
        listen_host=host,
        listen_port=port,
        max_body_bytes=max_body_bytes,
        recorder_id=recorder_id,
        flush_timeout=flush_timeout,
        schema_registry_url=schema_registry_url,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        **recorder_extras,
    )


@cli.command()
@kafka_options
@metrics_options
@sender_options
@click.option(
    "--group",
    "-g",
    required=True,
    envvar="TRAFFICMIRROR_GROUP",
    help="Consumer group; workers of one group share the topic's partitions.",
)
@click.option(
    "--group-protocol",
    type=click.Choice(["consumer", "classic"]),
    default="consumer",
    show_default=True,
    envvar="TRAFFICMIRROR_GROUP_PROTOCOL",
    help="consumer = KIP-848 (Kafka 4.0+); classic for older clusters.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0),
    default=20.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds to let in-flight requests finish before exiting.",
)
@comparison_options
@guardrail_options
@pace_options(default_speed="max")
@safety_options
@selection_options(window=False)
def worker(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    target: str,
    concurrency: int,
    timeout: float,
    group: str,
    group_protocol: str,
    drain_timeout: float,
    comparison: Any,
    guardrails: Any,
    pace: Any,
    safety: Any,
    selection: Any,
) -> None:
    """Run a replayer worker: consume TOPIC in a group and re-send it to TARGET.

    Scale by running more workers with the same --group (at most one per
    partition does work). Delivery is at least once: an offset is committed only
    when it and every earlier offset of its partition have been replayed.
    Requests of one recorded client connection (the message key) are sent in
    their original order, one at a time; Host becomes the target's host:port and
    every request carries X-Trafficmirror-Replay: <exchange id>. SIGTERM/SIGINT
    drains in-flight requests, commits and leaves the group.

    Pace: as records arrive (--speed max) by default; --rate caps the whole
    group, each worker taking its share of the partitions. A replay session
    (`trafficmirror session start`, on TOPIC.control) replaces that pace for
    the whole group with one shared clock until `session stop`.

    Each shadow response is compared with the recorded production response
    (status, headers, body: JSON by path, text by line, binary by hash) and the
    result written to TOPIC.results; `trafficmirror report` reads them.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    check_url(target, "--target")
    from replayer.consuming.worker import run_worker

    run_worker(
        settings=settings,
        topic=topic,
        group=group,
        group_protocol=group_protocol,
        target=target,
        concurrency=concurrency,
        timeout=timeout,
        drain_timeout=drain_timeout,
        schema_registry_url=schema_registry_url,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        comparison=comparison,
        guardrails=guardrails,
        pace=pace,
        safety=safety,
        selection=selection,
    )


@cli.group()
def replay() -> None:
    """Replay recorded traffic without a consumer group."""


@replay.command("range")
@kafka_options
@sender_options
@click.option(
    "--partition",
    "-p",
    "partitions",
    type=click.IntRange(0),
    multiple=True,
    help="Partition to replay; repeatable; all partitions when not given.",
)
@click.option(
    "--start-offset",
    type=click.IntRange(0),
    default=None,
    help="First offset to replay, in every chosen partition (this or --since/--until is required).",
)
@click.option(
    "--end-offset",
    default="end",
    show_default=True,
    help="Last offset to replay (inclusive), or 'end' for the last record present at start.",
)
@comparison_options
@guardrail_options
@pace_options(default_speed="1")
@safety_options
@selection_options()
def replay_range(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    target: str,
    concurrency: int,
    timeout: float,
    partitions: tuple[int, ...],
    start_offset: int | None,
    end_offset: str,
    comparison: Any,
    guardrails: Any,
    pace: Any,
    safety: Any,
    selection: Any,
) -> None:
    """Replay offsets START..END (inclusive) of TOPIC to TARGET, then exit.

    Exits 0 after printing a summary when every record in the range was handled
    (a request whose body the recorder truncated is skipped and counted, not
    sent), 1 if some could not be sent or decoded, and 2 on bad input (START >
    END, an offset outside the partition, an unknown topic or partition).
    Nothing is committed: running it again replays the same records.

    Pace: at the recorded pace (--speed 1), partitions merged in recorded
    order; --speed max for as fast as possible. A progress bar on a terminal.

    Each shadow response is compared with the recorded one and the result
    written to TOPIC.results (a replay of the same range again replaces, not
    adds to, its results in the report); the summary ends with a comparison
    line: match (noise only), mismatch, errors, skipped.

    Instead of offsets, --since/--until replay the exchanges recorded in a time
    window. Only GET, HEAD and OPTIONS are sent unless --methods says otherwise;
    --sample and --filter narrow it further. Whatever selection drops is
    counted in the summary as skipped-<reason>.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    check_url(target, "--target")
    end = parse_end_offset(end_offset)
    check_window_or_offsets(selection, start_offset, end_offset, required=True)
    if end is not None and start_offset is not None and start_offset > end:
        raise click.BadParameter(
            f"start offset {start_offset} is after end offset {end}", param_hint="--start-offset"
        )
    from replayer.consuming.offset_range import run_range

    sys.exit(
        run_range(
            settings=settings,
            topic=topic,
            partitions=list(partitions),
            start_offset=start_offset,
            end_offset=end,
            target=target,
            concurrency=concurrency,
            timeout=timeout,
            schema_registry_url=schema_registry_url,
            comparison=comparison,
            guardrails=guardrails,
            pace=pace,
            safety=safety,
            selection=selection,
        )
    )


@cli.command()
@kafka_connection_options
@click.option(
    "--since",
    metavar="TIME",
    help="Only results sent at or after TIME: ISO 8601 (2024-05-01T10:00 is local time; "
    "add Z or +02:00 for another zone), relative (-15m, -2h, -1d) or now.",
)
@click.option("--until", metavar="TIME", help="Only results sent before TIME (same formats).")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also write a self-contained HTML report (table, latency and mismatch charts, "
    "example diffs) to FILE; it opens offline.",
)
@click.option(
    "--run",
    "run_id",
    metavar="ID",
    help="Only results of this run (replay --run-id); default: every run combined.",
)
@click.option(
    "--fail-on-mismatch",
    is_flag=True,
    help="Exit 1 when any compared request differs (beyond noise), for CI gates.",
)
def report(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    since: str | None,
    until: str | None,
    html_path: str | None,
    run_id: str | None,
    fail_on_mismatch: bool,
) -> None:
    """Summarise the replay results of TOPIC per endpoint (reads TOPIC.results).

    Prints a table, worst endpoints first: requests, mismatch rate overall and
    by kind (status, header, JSON body, text body, binary body), requests that
    differ only in noise, errors, and production vs shadow latency
    p50/p95/p99, then the most frequent differing paths. An exchange replayed
    more than once (at-least-once delivery, a range replayed again) counts
    once: its last result wins. Reads up to the end present at start, then
    exits 0 (1 with --fail-on-mismatch when something differs, 2 on bad input).
    """
    import os

    from replayer.consuming.timespec import parse_time
    from trafficmirror.plumbing.errors import ConfigError

    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    window = {}
    for hint, value in (("--since", since), ("--until", until)):
        if value is not None:
            try:
                window[hint] = parse_time(value)
            except ConfigError as exc:
                raise click.BadParameter(str(exc), param_hint=hint) from None
    start, end = window.get("--since"), window.get("--until")
    if start is not None and end is not None and start >= end:
        raise click.BadParameter(f"{since!r} is not before --until {until!r}", param_hint="--since")
    if html_path is not None:
        folder = os.path.dirname(os.path.abspath(html_path))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"folder {folder} does not exist", param_hint="--html")
    from replayer.results.report import run_report

    sys.exit(
        run_report(
            settings,
            topic,
            html_path,
            start,
            end,
            run_id=run_id,
            fail_on_mismatch=fail_on_mismatch,
        )
    )


@cli.command()
@kafka_options
@click.option(
    "--partition",
    "-p",
    "partitions",
    type=click.IntRange(0),
    multiple=True,
    help="Partition to read; repeatable; all when not given.",
)
@click.option(
    "--start-offset",
    type=click.IntRange(0),
    default=None,
    help="First offset to print (default: the earliest present).",
)
@click.option(
    "--end-offset",
    default="end",
    show_default=True,
    help="Last offset to print (inclusive), or 'end'.",
)
@click.option(
    "--limit", "-n", type=click.IntRange(1), default=None, help="Print at most this many events."
)
@selection_options(choice=False)
def inspect(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    partitions: tuple[int, ...],
    start_offset: int | None,
    end_offset: str,
    limit: int | None,
    selection: Any,
) -> None:
    """Print recorded events as JSON, one object per line (like kcat for our events).

    Each line starts with "kafka" (topic, partition, offset, timestamp_ms, key),
    then every event field. Bytes (bodies, path, header lists as [name, value]
    pairs) appear as UTF-8 text when valid, else base64 under a "_base64" key
    (body_base64, headers_base64, ...). A record that is not an event prints
    {"kafka": ..., "error": ...}. Reads up to the last offset present at start
    (or END, or --limit events), then exits 0; it never waits for new records.
    --since/--until print the events recorded in a time window instead.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    end = parse_end_offset(end_offset)
    check_window_or_offsets(selection, start_offset, end_offset, required=False)
    if end is not None and start_offset is not None and start_offset > end:
        raise click.BadParameter(
            f"start offset {start_offset} is after end offset {end}", param_hint="--start-offset"
        )
    from replayer.consuming.inspection import run_inspect

    sys.exit(
        run_inspect(
            settings=settings,
            topic=topic,
            partitions=list(partitions),
            start_offset=start_offset,
            end_offset=end,
            limit=limit,
            schema_registry_url=schema_registry_url,
            since_ms=selection.since_ms,
            until_ms=selection.until_ms,
        )
    )


@cli.command("dev-kafka")
@click.option(
    "--partitions",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Partitions of every topic created here (and of auto-created ones).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="NAME[:PARTITIONS]",
    help="Create this topic at start; repeatable.",
)
@click.option(
    "--brokers",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Number of mock brokers.",
)
def dev_kafka(partitions: int, topics: tuple[str, ...], brokers: int) -> None:
    """Start an IN-MEMORY, TEST-GRADE Kafka cluster (librdkafka's mock cluster).

    Prints `bootstrap.servers=<list>` as its first line on stdout, then runs until
    SIGINT/SIGTERM. It speaks the Kafka protocol on 127.0.0.1 but keeps nothing:
    all data is lost when it stops, it has no admin API (create topics with
    --topic; producers auto-create) and no timestamp look-up. For trials and
    tests only; use a real Kafka cluster for anything else.
    """
    from trafficmirror.plumbing.devbroker import serve
    from trafficmirror.plumbing.errors import ConfigError

    try:
        sys.exit(serve(partitions, topics, brokers))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from None


@cli.command("kafka-config")
@kafka_cluster_options
@click.option(
    "--client",
    type=click.Choice(["producer", "consumer", "admin"]),
    default="admin",
    show_default=True,
    help="Whose settings: the recorder's producer, a replayer's consumer, or the plain "
    "connection settings every client shares.",
)
def kafka_config(
    bootstrap_servers: str | None,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    client: str,
) -> None:
    """Print the effective librdkafka settings as key=value lines, secrets as ***.

    Takes the same Kafka options as every other command (-b, -X, --kafka-config,
    the TLS/SASL flags and their environment variables) and shows what a client
    would be configured with, after librdkafka accepted it (exit 2 if it does
    not). Nothing is sent to the cluster.
    """
    from trafficmirror.plumbing.kafka import effective_config

    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    from trafficmirror.plumbing.errors import ConfigError

    try:
        lines = effective_config(settings, client)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="Kafka settings") from None
    click.echo("\n".join(lines))


@cli.command()
@click.option(
    "--requests",
    "-n",
    "requests",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="How many generated requests to send through the recorder.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Replayer workers in the consumer group.",
)
def demo(requests: int, workers: int) -> None:
    """Run the whole pipeline on this machine and check it end to end.

    Starts the in-memory broker, a sample app, the recorder in front of it, sends
    a burst of varied traffic, replays it with WORKERS workers to a sample shadow,
    prints what was recorded, replayed and received, and exits 0 only if every
    recorded exchange reached the shadow intact.
    """
    from trafficmirror.demo.run import run_demo

    sys.exit(run_demo(requests=requests, workers=workers))


cli.add_command(session)


# -- entry point --------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"trafficmirror: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one line per error, meaningful exit codes."""
    try:
        cli.main(args=argv, prog_name="trafficmirror", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        message = exc.format_message().replace("\n", " ")
        if type(exc).__name__ == "NoArgsIsHelpError":  # click 8.2+: the whole help
            message = "missing command"
        _fail(message + hint, exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except TrafficMirrorError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
