"""`trafficmirror report`: summarise the replay results of a topic per endpoint.

The command checks the time window (--since before --until) and the --html
folder before anything connects, then runs `replayer.results.report`, imported
only when the command runs, and exits with its code (1 with
--fail-on-mismatch when something differs, for CI gates).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from trafficmirror.cli.budgets import budget_options
from trafficmirror.cli.common import build_settings, kafka_connection_options


@click.command()
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
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    envvar="TRAFFICMIRROR_COLOR",
    help="Colour the table: auto = when stdout is a terminal and NO_COLOR is not set "
    "(env TRAFFICMIRROR_COLOR).",
)
@budget_options
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
    color: str,
    gate: Any,
) -> None:
    """Summarise the replay results of TOPIC per endpoint (reads TOPIC.results).

    Prints a table, worst endpoints first: requests, mismatch rate overall and
    by kind (status, header, JSON body, text body, binary body), requests that
    differ only in noise, errors, skipped requests, and production vs shadow
    latency p50/p95/p99, then the most frequent differing paths with example
    values (production → shadow). An exchange replayed
    more than once (at-least-once delivery, a range replayed again) counts
    once: its last result wins. Reads up to the end present at start, then
    exits 0 (1 with --fail-on-mismatch when something differs, 2 on bad input).

    CI gates: --fail-on 'mismatch_rate>1%' --fail-on 'p99_ratio>1.3' exits 1
    with one line per budget exceeded; --junit FILE writes a JUnit test case
    per endpoint for the CI server.
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
            color=color,
            gate=gate,
        )
    )
