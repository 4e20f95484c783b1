"""The summary `replay range` prints when it ends, and its exit code.

Counts per partition and in total, lateness, the comparison and dead-letter
lines on stdout; on stderr one line for what went wrong: an interrupt (with,
on stdout, where each partition got to and the command that replays the
rest, `resume`), records that could not be sent, or a selection that kept
nothing (`keptnothing`). Exit codes: 0 all handled, 1 some failed, 3 the
selection kept nothing, 130 interrupted.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from replayer.consuming.groupconsumer import offsets_text
from replayer.consuming.keptnothing import nothing_kept, window_only
from replayer.consuming.resume import MASK, resume_commands
from replayer.consuming.spans import Span
from replayer.results.dlq import DeadLetters
from replayer.results.stage import Comparison
from replayer.results.summary import Stats
from replayer.selecting.selector import SelectOptions
from replayer.stopping import StopSignals


def summarize(
    topic: str,
    shadow: str,
    spans: list[Span],
    stats: Stats,
    stop: StopSignals,
    out: IO[str],
    comparison: Comparison | None = None,
    dlq: DeadLetters | None = None,
    selection: SelectOptions | None = None,
) -> int:
    elapsed = time.monotonic() - stats.started
    handled = stats.handled
    rate = handled / elapsed if elapsed > 0 else 0.0
    print(
        f"replayed topic {topic!r} to {shadow}: {handled} records in {elapsed:.2f}s ({rate:.0f}/s)",
        file=out,
    )
    for span in spans:
        part = stats.partitions.get(span.partition)
        counts = (
            f"sent {part.sent}, errors {part.errors}, skipped {part.skipped}, "
            f"undecodable {part.undecodable}"
            if part
            else "no records"
        )
        where = f"partition {span.partition}: offsets {span.first}..{span.last}"
        print(f"  {where}: {counts}", file=out)
    if selection is not None:
        print(f"selection: {selection.describe()}", file=out)
    print(f"total: {stats.line()}", file=out)
    late = stats.lateness
    p50, p99 = late.quantile(0.5), late.quantile(0.99)
    if p50 is not None and p99 is not None:
        print(
            f"lateness: p50 {p50 * 1000:.1f}ms, p99 {p99 * 1000:.1f}ms, "
            f"max {late.max * 1000:.1f}ms over {late.count} timed requests",
            file=out,
        )
    if comparison is not None:
        print(comparison.line(), file=out)
    if dlq is not None and (dlq.counts.queued or dlq.counts.failed):
        print(dlq.line(), file=out)
    out.flush()
    empty = nothing_kept(stats, selection) if selection is not None else None
    if empty is not None:
        print(f"trafficmirror: warning: {empty}", file=sys.stderr)
    unfinished = sum(s.count for s in spans) - handled
    if stop.is_set() and unfinished > 0:
        why = f"stopped: {stop.reason}" if stop.reason else "interrupted"
        print(
            f"trafficmirror: {why}; about {unfinished} records of the range were not replayed",
            file=sys.stderr,
        )
        return 130 if stop.exit_code is None else stop.exit_code
    unsendable = stats.skipped.get("unsendable", 0)
    original = stats.skipped.get("original-host", 0)
    lost = dlq.counts.failed if dlq is not None else 0
    failed = stats.errors + stats.undecodable + unsendable + original
    if failed or lost:
        more = f", unsendable {unsendable}" if unsendable else ""
        if original:
            more += f", refused as the original host {original} (see --allow-original-host)"
        if lost:
            more += f"; {lost} dead letters not written"
        print(
            f"trafficmirror: {failed} of {handled} records could not be sent "
            f"(errors {stats.errors}, undecodable {stats.undecodable}{more})",
            file=sys.stderr,
        )
        return 1
    if empty is not None and not window_only(stats):
        return 3  # nothing was replayed: a CI job must not pass on it
    return 0


def print_resume(
    command: tuple[str, ...],
    spans: list[Span],
    left: dict[int, int],
    out: IO[str],
    window_ms: tuple[int | None, int | None] = (None, None),
) -> None:
    """How far an interrupted range got, and the command(s) that replay the rest."""
    if not left:
        return
    print(f"stopped early: continue from {offsets_text(left)} (partition@next offset)", file=out)
    if command:
        lines, masked = resume_commands(command, spans, left, window_ms)
        print("to continue, run:", file=out)
        for line in lines:
            print(f"  {line}", file=out)
        if masked:
            print(f"  (secret values are shown as {MASK}: put them back)", file=out)
    out.flush()
