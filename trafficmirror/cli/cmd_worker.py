"""`trafficmirror worker`: a replayer worker in a consumer group.

Gathers the option groups a replay takes (Kafka, metrics, senders, comparison,
guardrails, pace, safety, selection, transforms), checks the target URL, then runs
`replayer.consuming.worker`, imported only when the command runs so the rest
of the CLI never loads the replayer.
"""

from __future__ import annotations

from typing import Any

import click

from trafficmirror.cli.amplify import amplify_options
from trafficmirror.cli.common import (
    build_settings,
    check_url,
    kafka_options,
    metrics_options,
    sender_options,
)
from trafficmirror.cli.comparison import comparison_options
from trafficmirror.cli.guard import guardrail_options
from trafficmirror.cli.pace import pace_options
from trafficmirror.cli.safety import safety_options
from trafficmirror.cli.selection import selection_options
from trafficmirror.cli.transform import transform_options


@click.command()
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
    "--start-from",
    default="latest",
    show_default=True,
    envvar="TRAFFICMIRROR_START_FROM",
    metavar="latest|earliest|TIME",
    help="Where a partition the group has never committed starts: latest (what is recorded "
    "from now on), earliest (all retained traffic) or a TIME as --since takes it (ISO 8601, "
    "-2h, now). A group with committed offsets resumes from them. Env TRAFFICMIRROR_START_FROM.",
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
@amplify_options
@transform_options
def worker(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    target: str | None,
    concurrency: int,
    timeout: float,
    http_version: str,
    group: str,
    group_protocol: str,
    start_from: str,
    drain_timeout: float,
    comparison: Any,
    guardrails: Any,
    pace: Any,
    safety: Any,
    selection: Any,
    transforms: Any,
    amplify: Any,
) -> None:
    """Run a replayer worker: consume TOPIC in a group and re-send it to TARGET.

    Scale by running more workers with the same --group (at most one per
    partition does work). A new group starts at the end of each partition
    (--start-from latest: what is recorded from now on); a group resumes from
    its committed offsets. Delivery is at least once: an offset is committed only
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

    Transforms change each request just before it goes out: --target-map sends
    each recorded authority to its own shadow; --set-header, --remove-header,
    --transforms FILE (rewrite rules, credentials, ID correlation) and
    --transform-module (a Python hook). Results list the transforms applied.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    if target is not None:
        check_url(target, "--target")
    from replayer.consuming.startfrom import StartFrom
    from replayer.consuming.worker import WorkerConfig, run_worker
    from trafficmirror.plumbing.errors import ConfigError

    try:
        start = StartFrom.parse(start_from)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--start-from") from None

    run_worker(
        WorkerConfig(
            settings=settings,
            topic=topic,
            group=group,
            group_protocol=group_protocol,
            target=target,
            concurrency=concurrency,
            timeout=timeout,
            http_version=http_version,
            drain_timeout=drain_timeout,
            start_from=start,
            schema_registry_url=schema_registry_url,
            metrics_host=metrics_host,
            metrics_port=metrics_port,
            comparison=comparison,
            guardrails=guardrails,
            pace=pace,
            safety=safety,
            selection=selection,
            transforms=transforms,
            amplify=amplify,
        )
    )
