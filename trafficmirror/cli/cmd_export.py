"""`trafficmirror export`: recorded exchanges to a HAR, pcap or GoReplay file.

The command checks its options before anything connects, reads the offset
range or time window the way `inspect` does (`replayer.consuming.spans` and
`window`, no consumer group, nothing committed, only what is present at
start), sorts the events by request start and writes them with the
`interchange` writer of the format. The file appears only when complete (it is
written beside the target and renamed). Records that are not events are
skipped and counted on stderr. What is written is what Kafka holds: secrets
the recorder redacted stay redacted.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import IO, TYPE_CHECKING, Any, cast

import click

from trafficmirror.cli.common import build_settings, kafka_options, parse_end_offset
from trafficmirror.cli.selection import check_window_or_offsets, selection_options

if TYPE_CHECKING:
    from schemas.records import HttpExchange
    from trafficmirror.plumbing.kafka import KafkaSettings

logger = logging.getLogger(__name__)

FORMATS = ("har", "pcap", "gor")
_SUFFIXES = {".har": "har", ".pcap": "pcap", ".gor": "gor", ".gz": "gor"}


@click.command()
@kafka_options
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    help="File format: har (HTTP Archive 1.2: browser devtools, HAR viewers), pcap (TCP "
    "streams for Wireshark, tshark, Zeek, Suricata) or gor (GoReplay). Default: from the "
    "--output name (.har, .pcap, .gor, .gor.gz).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write ('-' for stdout); written beside and renamed when complete.",
)
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
    help="First offset to export (default: the earliest present).",
)
@click.option(
    "--end-offset",
    default="end",
    show_default=True,
    help="Last offset to export (inclusive), or 'end' (the last present at start).",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1),
    default=None,
    help="Export at most this many events (the first read, in partition order).",
)
@selection_options(choice=False)
def export(
    bootstrap_servers: str | None,
    topic: str,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    schema_registry_url: str | None,
    fmt: str | None,
    output: str,
    partitions: tuple[int, ...],
    start_offset: int | None,
    end_offset: str,
    limit: int | None,
    selection: Any,
) -> None:
    """Write recorded exchanges to a HAR, pcap or GoReplay (.gor) file.

    Reads the whole topic, an offset range (--start-offset/--end-offset) or a time
    window (--since/--until), like inspect, and writes the exchanges in recorded
    order. HTTP/2 exchanges become HTTP/1.1 in pcap and gor files. docs/interchange.md
    says what each format keeps and loses.
    """
    fmt = fmt or _guess(output)
    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    end = parse_end_offset(end_offset)
    check_window_or_offsets(selection, start_offset, end_offset, required=False)
    if end is not None and start_offset is not None and start_offset > end:
        raise click.BadParameter(
            f"start offset {start_offset} is after end offset {end}", param_hint="--start-offset"
        )
    if output != "-":
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"directory {folder} does not exist", param_hint="--output")
    events, skipped, sessions = read_events(
        settings,
        topic,
        list(partitions),
        start_offset,
        end,
        limit,
        schema_registry_url,
        selection.since_ms,
        selection.until_ms,
    )
    from interchange.exchange import sort_key

    events.sort(key=sort_key)
    count = _write(fmt, events, output)
    where = "stdout" if output == "-" else output
    note = f" ({skipped} records that are not events skipped)" if skipped else ""
    if sessions:
        note += (
            f" ({sessions} WebSocket message and end events left out: the formats hold HTTP "
            "exchanges; each session's upgrade is exported)"
        )
    click.echo(f"exported {count} exchanges from {topic} to {where} as {fmt}{note}", err=True)


def _guess(output: str) -> str:
    for suffix, fmt in _SUFFIXES.items():
        if output.lower().endswith(suffix):
            return fmt
    raise click.BadParameter(
        f"cannot tell the format from {output!r}: give --format har, pcap or gor",
        param_hint="--format",
    )


def _write(fmt: str, events: list[HttpExchange], output: str) -> int:
    import gzip
    import io

    from interchange import gor, har, pcap
    from trafficmirror import __version__

    def dump(stream: Any) -> int:
        if fmt == "har":
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
            count = har.write(events, text, __version__)
            text.flush()
            text.detach()
            return count
        if fmt == "pcap":
            return pcap.write(events, stream)
        if output.lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=stream, mode="wb") as packed:
                return gor.write(events, cast(IO[bytes], packed))
        return gor.write(events, stream)

    if output == "-":
        count = dump(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return count
    folder = os.path.dirname(os.path.abspath(output))
    handle, temporary = tempfile.mkstemp(prefix=".export-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            count = dump(stream)
        os.replace(temporary, output)
    except BaseException:
        os.unlink(temporary)
        raise
    return count


def read_events(
    settings: KafkaSettings,
    topic: str,
    partitions: list[int],
    start_offset: int | None,
    end_offset: int | None,
    limit: int | None,
    registry_url: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> tuple[list[HttpExchange], int, int]:
    """The HTTP events of the range or window, how many records were not events, and how
    many were WebSocket message or end events (left out)."""
    from replayer.consuming.topic_reader import read_records
    from schemas.codec import Codec
    from schemas.records import KIND_HTTP
    from trafficmirror.plumbing.errors import DecodeError

    codec = Codec(registry_url=registry_url)
    events: list[HttpExchange] = []
    skipped = sessions = 0
    records = read_records(
        settings, topic, partitions, start_offset, end_offset, since_ms, until_ms
    )
    try:
        for record in records:
            try:
                event = codec.decode_exchange(record.value)
            except DecodeError as exc:
                skipped += 1
                logger.debug("offset %d: %s", record.offset, exc)
                continue
            if event["kind"] == KIND_HTTP:
                events.append(event)
            else:
                sessions += 1
            if limit is not None and len(events) >= limit:
                break
    finally:
        records.close()
    return events, skipped, sessions
