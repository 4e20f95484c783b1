"""`trafficmirror inspect`: print recorded events as a table or as JSON lines, like kcat.

The format is a table on a terminal and JSON lines otherwise (so scripts that
read the JSON through a pipe keep working); bodies are left out of the table
unless asked for. The command checks the offsets or the time window before
anything connects,
then runs `replayer.consuming.inspection`, imported only when the command
runs; it reads what is present at start and exits, never waiting for more.
(The `cmd_` prefix of the command modules also keeps this one from being
called `inspect`, which would shadow the standard library.)
"""

from __future__ import annotations

import sys
from typing import Any

import click

from trafficmirror.cli.common import build_settings, kafka_options, parse_end_offset
from trafficmirror.cli.selection import check_window_or_offsets, selection_options


@click.command()
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
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["auto", "table", "json"]),
    default="auto",
    show_default=True,
    help="table: one line per event (offset, time, method, authority, status, body sizes, "
    "latency, path); json: every field, one object per line; auto: table when stdout is a "
    "terminal, else json.",
)
@click.option(
    "--bodies/--no-bodies",
    default=None,
    help="Show the bodies (under each table line) or leave them out (of the JSON; "
    "body_length stays). Default: in the JSON, not in the table.",
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
    output_format: str,
    bodies: bool | None,
    selection: Any,
) -> None:
    """Print recorded events: a table on a terminal, JSON lines otherwise (like kcat).

    The table has one line per event: partition:offset, request time (UTC),
    method, authority, status (ERR: no response), request and response body
    sizes (+: cut at the recorder's cap), latency in ms and path; --bodies adds
    the bodies. The JSON (--format json, or any pipe) has one object per line,
    starting with "kafka" (topic, partition, offset, timestamp_ms, key),
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
    table = output_format == "table" or (output_format == "auto" and sys.stdout.isatty())
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
            table=table,
            bodies=(not table) if bodies is None else bodies,
        )
    )
