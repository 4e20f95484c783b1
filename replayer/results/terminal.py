"""The terminal form of `trafficmirror report`: the endpoint table, top differences, summary.

`format_table` lays out one row per endpoint (worst first) with the mismatch
rate by kind, noise, errors, skipped requests and latencies, then the most
frequent differences of each differing endpoint with an example of the values
(production → shadow, from the results the aggregate kept, as the HTML shows
them), then the transforms applied. Colour (ANSI) is optional: `use_color`
decides it from `--color auto|always|never`, the terminal and NO_COLOR
(https://no-color.org), and the colours are added after the columns are
padded, so the layout is the same with and without.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TextIO

from replayer.comparing.endpoints import printable
from replayer.comparing.responses import KINDS
from replayer.results.aggregate import Aggregate, EndpointStats, aggregate_path
from replayer.results.html import KIND_LABELS
from schemas.records import ReplayResult

#: Endpoints listed in the terminal table; the rest are summarised in one line.
MAX_ROWS = 50
#: Endpoint names are cut to this width in the terminal table.
ENDPOINT_WIDTH = 48
#: Difference values are cut to this width.
VALUE_WIDTH = 40

_RED, _GREEN, _YELLOW, _BOLD, _DIM, _RESET = (
    "\x1b[31m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[0m",
)


def use_color(mode: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour for `--color MODE`: always, never, or auto (a terminal, NO_COLOR unset or empty)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Paint:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.on and text.strip() else text


def _pct(count: int, compared: int) -> str:
    if not count:
        return "-"
    return f"{count / compared * 100:.1f}%" if compared else str(count)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _latencies(stats: EndpointStats, side: str) -> str:
    return "/".join(_ms(stats.latency_ms(side, q)) for q in (50, 95, 99))


def _cut(text: str, width: int) -> str:
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(n: int) -> str:
    return str(n) if n else "-"


def _row(stats: EndpointStats, mirror: bool = False) -> list[str]:
    return [
        _cut(stats.endpoint, ENDPOINT_WIDTH),
        str(stats.requests),
        _pct(stats.mismatches, stats.compared),
        *(_pct(stats.mismatch_by_kind[k], stats.compared) for k in KINDS),
        _count(stats.noise_only),
        _count(stats.errors),
        _count(stats.skipped),
        *((_count(stats.vs_baseline), _count(stats.unverified)) if mirror else ()),
        _latencies(stats, "production"),
        _latencies(stats, "shadow"),
    ]


def _value(value: str | None) -> str:
    return "(absent)" if value is None else _cut(value, VALUE_WIDTH)


def example_values(kind: str, path: str, found: Sequence[ReplayResult]) -> str | None:
    """`'1.50' → '1.5'`: the values of one kept result's difference at (kind, path), if any."""
    for result in found:
        for diff in result["differences"]:
            if diff["noise"] or diff["kind"] != kind:
                continue
            if aggregate_path(kind, diff["path"]) == path:
                return f"{_value(diff['production'])} → {_value(diff['shadow'])}"
    return None


def format_table(aggregate: Aggregate, max_rows: int = MAX_ROWS, color: bool = False) -> str:
    """The per-endpoint table for a terminal, worst endpoints first, plus top differences.

    Columns: requests, mismatch rate (of compared requests) overall and by kind,
    requests that differ only in noise, errors, skipped (not sent: truncated,
    unsafe, filtered ...), and production/shadow latency p50/p95/p99 in
    milliseconds. When there are mirror captures (no production response), two
    more: `VS BASE`, how many of the compared requests were compared with the
    baseline's response, and `NO PROD RESP`, how many were sent but not
    compared (no baseline): neither counts as a mismatch. `color` adds ANSI
    colours (differences and errors red, a clean column green).
    """
    paint = _Paint(color)
    rows = aggregate.endpoints()
    total = aggregate.total()
    mirror = bool(total.vs_baseline or total.unverified)
    header = [
        "ENDPOINT",
        "REQS",
        "MISMATCH",
        *(KIND_LABELS[k].upper() for k in KINDS),
        "NOISE",
        "ERR",
        "SKIP",
        *(("VS BASE", "NO PROD RESP") if mirror else ()),
        "PROD ms p50/95/99",
        "SHADOW ms p50/95/99",
    ]
    bad_columns = {2, *range(3, 3 + len(KINDS)), 4 + len(KINDS)}
    table = [header, *(_row(s, mirror) for s in rows[:max_rows])]
    table.append(_row(total, mirror))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(cells: Sequence[str], bold: bool = False) -> str:
        padded = [cells[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        if bold:
            return paint("  ".join(padded).rstrip(), _BOLD)
        shown = [
            paint(text, _RED) if i in bad_columns and cells[i] != "-" else text
            for i, text in enumerate(padded)
        ]
        return "  ".join(shown).rstrip()

    out = [line(header, bold=True)]
    out.extend(line(r) for r in table[1:-1])
    if len(rows) > max_rows:
        out.append(f"… {len(rows) - max_rows} more endpoints (see the HTML report)")
    out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    out.append(line(table[-1]))
    differing = [s for s in rows if s.mismatches]
    if differing:
        examples = aggregate.examples()
        out.append("")
        out.append(paint("Most frequent differences (not noise), with example values:", _BOLD))
        for stats in differing[:max_rows]:
            out.append(f"  {paint(_cut(stats.endpoint, ENDPOINT_WIDTH), _YELLOW)}")
            for kind, path, count in stats.top_paths(3):
                values = example_values(kind, path, examples.get(stats.endpoint, ()))
                shown = f": {values}" if values else ""
                label = KIND_LABELS.get(kind, kind)
                where = label if path in (kind, label) else f"{label} {_cut(path, 60)}"
                out.append(f"    {where} ×{count}{shown}")
    elif total.compared:
        out.append("")
        out.append(paint("No endpoint differs (beyond noise).", _GREEN))
    transformed = [s for s in rows if s.transforms]
    if transformed:
        out.append("")
        out.append("Transforms applied (requests changed, by rule name):")
        for stats in transformed[:max_rows]:
            out.append(f"  {_cut(stats.endpoint, ENDPOINT_WIDTH)}: {transforms_text(stats)}")
    return "\n".join(out)


def transforms_text(stats: EndpointStats) -> str:
    """`auth ×120, order-id ×30`: how many requests each transform changed."""
    return ", ".join(
        f"{printable(name)} ×{count}" for name, count in stats.transforms.most_common()
    )


def summary_line(aggregate: Aggregate) -> str:
    """One line: how many results, how many differ, errors, duplicates ignored.

    Mirror captures add how many had no production response (sent, not
    compared) and how many were compared with the baseline instead.
    """
    total = aggregate.total()
    mirror = ""
    if total.unverified:
        mirror += f", {total.unverified} no production response (not compared)"
    if total.vs_baseline:
        mirror += f"; {total.vs_baseline} of match and mismatch compared vs baseline"
    return (
        f"{total.requests} results: {total.matches} match ({total.noise_only} only in noise), "
        f"{total.mismatches} mismatch, {total.errors} errors, {total.skipped} skipped{mirror}; "
        f"{aggregate.duplicates} duplicate deliveries ignored"
    )


def runs_note(aggregate: Aggregate) -> str | None:
    """The note that results of several runs are combined (None for one run)."""
    if len(aggregate.runs) <= 1:
        return None
    runs = ", ".join(f"{printable(r) or '(unnamed)'} ({n})" for r, n in aggregate.runs.items())
    return f"results of several runs are combined: {runs}; pick one with --run"
