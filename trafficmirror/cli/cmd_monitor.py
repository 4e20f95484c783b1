"""`trafficmirror monitor`: security monitoring of the traffic topic, live.

Options: the Kafka and metrics ones every command has, the consumer group,
how clients are named (`--client-header`, `--client-key-file`), endpoint
patterns, and the thresholds of `monitor.config.Thresholds`: a `--rules FILE`
and `--threshold NAME=VALUE` items (one option, not one per threshold: the
help stays readable and every name is checked in one place). Everything is checked here,
before anything connects (one line, exit code 2); `monitor.run` is imported
only when the command runs.
"""

from __future__ import annotations

import os
import re

import click

from trafficmirror.cli.common import build_settings, kafka_options, metrics_options

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
MIN_KEY_BYTES = 16


def _threshold_help() -> str:
    from monitor.config import threshold_names

    names = ", ".join(f"{name} ({default:g})" for name, default in threshold_names())
    return (
        "Set a threshold, NAME=VALUE; repeatable, wins over --rules. The names and their "
        f"defaults: {names}. docs/monitoring.md says what each means."
    )


def _read_key(path: str | None) -> bytes | None:
    from monitor.identity import KEY_ENV

    if path is None:
        value = os.environ.get(KEY_ENV, "")
        if not value:
            return None
        key, hint = value.encode(), KEY_ENV
    else:
        try:
            with open(path, "rb") as f:
                key = f.read().strip()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint="--client-key-file"
            ) from None
        hint = "--client-key-file"
    if len(key) < MIN_KEY_BYTES:
        raise click.BadParameter(
            f"the key must have at least {MIN_KEY_BYTES} bytes", param_hint=hint
        )
    return key


@click.command()
@kafka_options
@metrics_options
@click.option(
    "--group",
    "-g",
    envvar="TRAFFICMIRROR_MONITOR_GROUP",
    help="Consumer group; monitors of one group share the topic's partitions "
    "[default: trafficmirror-monitor-TOPIC].",
)
@click.option(
    "--group-protocol",
    type=click.Choice(["consumer", "classic"]),
    default="consumer",
    show_default=True,
    help="consumer = KIP-848 (Kafka 4.0+); classic for older clusters.",
)
@click.option(
    "--start",
    type=click.Choice(["latest", "earliest"]),
    default="latest",
    show_default=True,
    help="Where a new group starts reading: latest (traffic from now on) or earliest (the "
    "whole topic first). A group that has committed offsets goes on from them.",
)
@click.option(
    "--client-header",
    metavar="NAME",
    help="Name clients by this request header (an API key, a tenant id): its value's "
    "HMAC-SHA256, hmac:<hex>, never the value. Requests without it, and the default: the "
    "client address (addr:<ip>).",
)
@click.option(
    "--client-key-file",
    envvar="TRAFFICMIRROR_MONITOR_KEY_FILE",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="HMAC key (16+ bytes) for --client-header (env TRAFFICMIRROR_MONITOR_KEY_FILE, or the "
    "key itself in TRAFFICMIRROR_MONITOR_KEY). Give every member the same key; without one "
    "each process draws its own and names the same client differently.",
)
@click.option(
    "--route",
    "routes",
    multiple=True,
    metavar="PATTERN",
    help="Endpoint pattern '[METHOD ]/path/{name}', tried before the built-in templating "
    "(/users/17 -> /users/{id}); repeatable.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML file of thresholds: a mapping of the --threshold names to values, e.g. "
    "'rate-factor: 20'.",
)
@click.option(
    "--signatures",
    metavar="LIST",
    help="Signature detectors to run, comma-separated: sql_injection, xss, path_traversal, "
    "scanner, or none [default: all].",
)
@click.option(
    "--threshold",
    "threshold_items",
    multiple=True,
    metavar="NAME=VALUE",
    help=_threshold_help(),
)
@click.option(
    "--monitor-id",
    metavar="NAME",
    help="Names this process in its alerts [default: host:pid].",
)
def monitor(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    group: str | None,
    group_protocol: str,
    start: str,
    client_header: str | None,
    client_key_file: str | None,
    routes: tuple[str, ...],
    rules_file: str | None,
    signatures: str | None,
    threshold_items: tuple[str, ...],
    monitor_id: str | None,
) -> None:
    """Watch TOPIC for attacks and anomalies; alerts go to TOPIC.alerts, the log and metrics.

    Every exchange is checked for signatures of attacks: SQL injection and XSS
    (libinjection) in the path, query, the headers a client controls and form,
    JSON or text bodies; path traversal; scanner user agents. Requests are also
    counted per client, endpoint template and pair over a sliding window of
    recorded time and compared with each one's learned usual rate:
    client_rate / endpoint_rate (far above the usual rate), status_burst (many
    401/403/404 for one client), new_client_hammering (a new client sending
    most of its requests to one endpoint). Alerts name clients (address or
    HMAC), endpoints and where a signature matched, never a header value,
    cookie or body. Scale by running more monitors with the same --group.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    from monitor.config import SIGNATURES, MonitorConfig, Thresholds, apply_items, load_rules
    from replayer.comparing.endpoints import Router
    from trafficmirror.plumbing.errors import ConfigError

    if client_header is not None and not _HEADER_NAME.fullmatch(client_header):
        raise click.BadParameter(
            f"{client_header!r} is not a header name", param_hint="--client-header"
        )
    key = _read_key(client_key_file)
    try:
        Router(routes)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--route") from None
    try:
        base = load_rules(rules_file) if rules_file else Thresholds()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from None
    if signatures is not None:
        names = tuple(s.strip() for s in signatures.split(",") if s.strip())
        if names == ("none",):
            names = ()
        elif not names or set(names) - set(SIGNATURES):
            raise click.BadParameter(
                f"{signatures!r}: use a comma-separated list of {', '.join(SIGNATURES)}, or none",
                param_hint="--signatures",
            )
        base = base.with_overrides({"signatures": names})
    try:
        limits = apply_items(threshold_items, base)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--threshold") from None
    from monitor.run import run_monitor

    run_monitor(
        MonitorConfig(
            settings=settings,
            topic=topic,
            group=group or f"trafficmirror-monitor-{topic}",
            group_protocol=group_protocol,
            start=start,
            client_header=client_header,
            client_key=key,
            routes=routes,
            thresholds=limits,
            schema_registry_url=schema_registry_url,
            metrics_host=metrics_host,
            metrics_port=metrics_port,
            monitor_id=monitor_id,
        )
    )
