"""`trafficmirror replay range`: replay an offset range or a time window, then exit.

The `replay` group holds the replays that need no consumer group. `range`
takes the same option groups as the worker, checks the offsets or the window
(start not after end, one of the two given) before anything connects, then
runs `replayer.consuming.offset_range`, imported only when the command runs,
and exits with its code (0 all handled, 1 some failed, 2 bad input, 3 nothing
selected, 130 interrupted).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from trafficmirror.cli.amplify import amplify_options
from trafficmirror.cli.common import (
    build_settings,
    check_url,
    kafka_options,
    parse_end_offset,
    sender_options,
)
from trafficmirror.cli.comparison import comparison_options
from trafficmirror.cli.guard import give_up_option, guardrail_options
from trafficmirror.cli.pace import pace_options
from trafficmirror.cli.safety import safety_options
from trafficmirror.cli.selection import check_window_or_offsets, selection_options
from trafficmirror.cli.transform import transform_options


@click.group()
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
@give_up_option
@pace_options(default_speed="1")
@safety_options
@selection_options()
@amplify_options
@transform_options
def replay_range(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    target: str | None,
    concurrency: int,
    timeout: float,
    http_version: str,
    partitions: tuple[int, ...],
    start_offset: int | None,
    end_offset: str,
    comparison: Any,
    guardrails: Any,
    pace: Any,
    safety: Any,
    selection: Any,
    transforms: Any,
    amplify: Any,
) -> None:
    """Replay offsets START..END (inclusive) of TOPIC to TARGET, then exit.

    Exits 0 after printing a summary when every record in the range was handled
    (a request whose body the recorder truncated is skipped and counted, not
    sent), 1 if some could not be sent or decoded, 2 on bad input (START >
    END, an offset outside the partition, an unknown topic or partition), 3
    when the selection kept nothing, 130 when interrupted.
    Nothing is committed: running it again replays the same records. Stopped
    early (SIGINT/SIGTERM), the summary says where each partition got to and
    prints the command that replays the rest (exit 130).

    Pace: at the recorded pace (--speed 1), partitions merged in recorded
    order; --speed max for as fast as possible. A progress bar on a terminal.

    Each shadow response is compared with the recorded one and the result
    written to TOPIC.results (a replay of the same range again replaces, not
    adds to, its results in the report); the summary ends with a comparison
    line: match (noise only), mismatch, errors, skipped.

    Instead of offsets, --since/--until replay the exchanges recorded in a time
    window (with offsets too: the window's exchanges within them). Only GET,
    HEAD and OPTIONS are sent unless --methods says otherwise; --sample and
    --filter narrow it further. Whatever selection drops is counted in the
    summary as skipped-<reason>; a selection that keeps none of the records
    read warns why (with a filter syntax hint) and exits 3, unless only the
    time window dropped them (exit 0, as for an empty window).

    Transforms change each request just before it goes out: --target-map sends
    each recorded authority to its own shadow; --set-header, --remove-header,
    --transforms FILE (rewrite rules, credentials, ID correlation) and
    --transform-module (a Python hook). Results list the transforms applied.
    """
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    if target is not None:
        check_url(target, "--target")
    end = parse_end_offset(end_offset)
    check_window_or_offsets(selection, start_offset, end_offset, required=True, combine=True)
    if end is not None and start_offset is not None and start_offset > end:
        raise click.BadParameter(
            f"start offset {start_offset} is after end offset {end}", param_hint="--start-offset"
        )
    from replayer.consuming.offset_range import RangeConfig, run_range

    sys.exit(
        run_range(
            RangeConfig(
                settings=settings,
                topic=topic,
                partitions=partitions,
                start_offset=start_offset,
                end_offset=end,
                target=target,
                concurrency=concurrency,
                timeout=timeout,
                http_version=http_version,
                schema_registry_url=schema_registry_url,
                comparison=comparison,
                guardrails=guardrails,
                pace=pace,
                safety=safety,
                selection=selection,
                transforms=transforms,
                command=tuple(sys.argv[1:]),
                amplify=amplify,
            )
        )
    )
