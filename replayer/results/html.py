"""The HTML report: one self-contained file with the endpoint table, charts and example diffs.

No JavaScript, no fonts, images or styles from the network: inline CSS and
inline SVG only, so the file opens anywhere, offline, and can be attached to a
ticket. A Content-Security-Policy meta tag forbids scripts and remote loads as
a second line of defence: every value shown comes from recorded traffic, which
is untrusted, and all of it goes through `html.escape` (`charts.escaped()`).
The SVG charts are drawn in `charts.py`; this module lays out the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from replayer.comparing.responses import KINDS, MIRROR_CAPTURE
from replayer.results.aggregate import Aggregate, EndpointStats
from replayer.results.charts import escaped, latency_cdf_svg, mismatch_chart_svg, percent
from schemas.records import ReplayResult

KIND_LABELS = {
    "status": "status",
    "header": "headers",
    "body_json": "JSON",
    "body_text": "text",
    "body_binary": "binary",
    "message": "messages",
}

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; }
body { margin: 0 auto; max-width: 1200px; padding: 24px; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; font-family: ui-monospace, monospace; }
.meta { color: #6b7280; font-size: 13px; margin: 0; }
.note { background: #fef3c7; border: 1px solid #f59e0b; padding: 4px 8px; margin: 8px 0 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 16px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 16px; }
.card b { display: block; font-size: 22px; } .card span { color: #6b7280; font-size: 12px; }
.card.bad b { color: #dc2626; } .card.ok b { color: #16a34a; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid #e5e7eb; padding: 4px 6px; text-align: right; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.ep, th.ep { text-align: left; font-family: ui-monospace, monospace; overflow-wrap: anywhere;
  min-width: 8em; }
td.bad { color: #b91c1c; font-weight: 600; } td.zero { color: #9ca3af; }
.charts { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
figure { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; margin: 0;
  padding: 8px; flex: 1 1 540px; }
figcaption { font-size: 13px; color: #4b5563; margin: 0 0 4px 4px; }
svg { display: block; width: 100%; height: auto; }
svg text { font-size: 11px; fill: #374151; }
table.diff { table-layout: fixed; } .diff th, .diff td { text-align: left; }
.diff col.k { width: 11%; } .diff col.path { width: 21%; } .diff col.v { width: 34%; }
.diff td pre { margin: 0; white-space: pre-wrap;
  word-break: break-all; font-size: 12px; }
.diff td.p { background: #eff6ff; } .diff td.s { background: #fff7ed; }
.diff tr.noise td { color: #9ca3af; background: #fafafa; }
.example { margin: 8px 0 16px; } .example p { margin: 4px 0; font-size: 12px; color: #4b5563; }
.absent { color: #9ca3af; font-style: italic; }
ul.paths { margin: 4px 0; font-size: 12px; font-family: ui-monospace, monospace; }
"""


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


# -- table --------------------------------------------------------------------------


def _rate_cell(count: int, compared: int) -> str:
    if not count:
        return '<td class="zero">0</td>'
    return f'<td class="bad">{percent(count / compared)}</td>' if compared else f"<td>{count}</td>"


def endpoint_table(rows: Sequence[EndpointStats], total: EndpointStats) -> str:
    """The endpoint table as an HTML `<table>`, with a total row.

    With mirror captures (no production response), two more columns: compared
    vs baseline, and no production response (sent, not compared).
    """
    mirror = bool(total.vs_baseline or total.unverified)
    head = (
        "<tr><th class='ep' rowspan='2'>endpoint</th><th rowspan='2'>requests</th>"
        "<th rowspan='2'>mismatch</th>"
        f"<th colspan='{len(KINDS)}'>mismatch by kind</th><th rowspan='2'>noise only</th>"
        "<th rowspan='2'>errors</th><th rowspan='2'>skipped</th>"
        + ("<th rowspan='2'>vs baseline</th><th rowspan='2'>no production response</th>" * mirror)
        + "<th colspan='3'>production ms</th><th colspan='3'>shadow ms</th></tr><tr>"
        + "".join(f"<th>{KIND_LABELS[k]}</th>" for k in KINDS)
        + "<th>p50</th><th>p95</th><th>p99</th>" * 2
        + "</tr>"
    )
    body = [_table_row(s, mirror=mirror) for s in rows]
    body.append(_table_row(total, css="total", mirror=mirror))
    return f"<table class='endpoints'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _count_cell(count: int, css: str = "") -> str:
    return f"<td{css}>{count}</td>" if count else "<td class='zero'>0</td>"


def _table_row(s: EndpointStats, css: str = "", mirror: bool = False) -> str:
    mirror_cells = [(s.vs_baseline, "vs-baseline"), (s.unverified, "unverified")] if mirror else []
    cells = [
        f"<td class='ep'>{escaped(s.endpoint)}</td>",
        f"<td>{s.requests}</td>",
        _rate_cell(s.mismatches, s.compared),
        *(_rate_cell(s.mismatch_by_kind[k], s.compared) for k in KINDS),
        _count_cell(s.noise_only),
        _count_cell(s.errors, " class='bad'"),
        f"<td>{s.skipped}</td>",
        *(_count_cell(n, f" class='{c}'") for n, c in mirror_cells),
        *(f"<td>{_ms(s.latency_ms('production', q))}</td>" for q in (50, 95, 99)),
        *(f"<td>{_ms(s.latency_ms('shadow', q))}</td>" for q in (50, 95, 99)),
    ]
    style = " style='font-weight:600;background:#f9fafb'" if css == "total" else ""
    return f"<tr class='{css or 'endpoint'}'{style}>{''.join(cells)}</tr>"


# -- examples -----------------------------------------------------------------------


def _value(value: str | None) -> str:
    return "<span class='absent'>absent</span>" if value is None else f"<pre>{escaped(value)}</pre>"


def example_html(result: ReplayResult) -> str:
    """One mismatching result: what was requested, then its differences side by side.

    The reference column is production's recorded response, or for a mirror
    capture (no production response) the baseline's.
    """
    reference, reference_status = "production", result["production_status"]
    if result["capture"] == MIRROR_CAPTURE:
        baseline = result["baseline"]
        reference = "baseline"
        reference_status = baseline["status"] if baseline is not None else None
    rows = []
    for diff in result["differences"]:
        css = "noise" if diff["noise"] else "real"
        rows.append(
            f"<tr class='{css}'><td>{escaped(KIND_LABELS.get(diff['kind'], diff['kind']))}"
            f"{' (noise)' if diff['noise'] else ''}</td>"
            f"<td><pre>{escaped(diff['path'])}</pre></td>"
            f"<td class='p'>{_value(diff['production'])}</td>"
            f"<td class='s'>{_value(diff['shadow'])}</td></tr>"
        )
    shown = len(result["differences"])
    more = result["difference_count"] - shown
    note = f"<p>… and {more} more differences not stored</p>" if more > 0 else ""
    return (
        "<div class='example'>"
        f"<p><b>{escaped(result['method'])} {escaped(result['path'])}</b> · exchange "
        f"<code>{escaped(result['id'])}</code> · status {reference} {escaped(reference_status)} → "
        f"shadow {escaped(result['shadow_status'])} · offset "
        f"{escaped(result['source']['partition'])}:"
        f"{escaped(result['source']['offset'])}{_transforms(result['transforms'])}</p>"
        "<table class='diff'><colgroup><col class='k'><col class='path'><col class='v'>"
        f"<col class='v'></colgroup><thead><tr><th>kind</th><th>path</th><th>{reference}</th>"
        f"<th>shadow</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{note}</div>"
    )


def _transforms(names: Sequence[str]) -> str:
    return f" · transforms {escaped(', '.join(names))}" if names else ""


def transforms_html(rows: Sequence[EndpointStats]) -> str:
    """Which transforms changed how many requests of each endpoint ('' when none did)."""
    lines = "".join(
        f"<tr><td>{escaped(s.endpoint)}</td><td>"
        + ", ".join(f"{escaped(name)} × {count}" for name, count in s.transforms.most_common())
        + "</td></tr>"
        for s in rows
        if s.transforms
    )
    if not lines:
        return ""
    return (
        "<h2>Transforms applied</h2><table class='transforms'><thead><tr><th>endpoint</th>"
        f"<th>requests changed, by rule name</th></tr></thead><tbody>{lines}</tbody></table>"
    )


# -- page ---------------------------------------------------------------------------


def render_html(
    aggregate: Aggregate,
    examples: Mapping[str, Sequence[ReplayResult]] | None = None,
    *,
    title: str = "trafficmirror report",
    subtitle: str = "",
    generated: dt.datetime | None = None,
    note: str | None = None,
) -> str:
    """The whole report as one self-contained HTML document.

    `examples` maps endpoints to a few mismatching results (default: the ones the
    aggregate kept); `note` is shown under the title (e.g. that the results of
    several runs are combined).
    """
    rows = aggregate.endpoints()
    total = aggregate.total()
    if examples is None:
        examples = aggregate.examples()
    generated = generated or dt.datetime.now(dt.timezone.utc)
    cards = [
        ("requests", str(total.requests), ""),
        ("compared", str(total.compared), ""),
        ("mismatch", percent(total.mismatch_rate()), "bad" if total.mismatches else "ok"),
        ("noise only", str(total.noise_only), ""),
        ("errors", str(total.errors), "bad" if total.errors else "ok"),
        ("skipped", str(total.skipped), ""),
        ("duplicates ignored", str(aggregate.duplicates), ""),
    ]
    if total.vs_baseline or total.unverified:  # mirror captures: no production response
        cards[2:2] = [
            ("compared vs baseline", str(total.vs_baseline), ""),
            ("no production response", str(total.unverified), ""),
        ]
    card_html = "".join(
        f"<div class='card {css}'><b>{escaped(value)}</b><span>{escaped(name)}</span></div>"
        for name, value, css in cards
    )
    sections = []
    for stats in rows:
        found = examples.get(stats.endpoint, ())
        if not stats.mismatches and not found:
            continue
        paths = "".join(
            f"<li>{escaped(KIND_LABELS.get(kind, kind))} <b>{escaped(path)}</b> × {count}</li>"
            for kind, path, count in stats.top_paths()
        )
        vs_baseline = f"; {stats.vs_baseline} compared vs baseline" if stats.vs_baseline else ""
        sections.append(
            f"<section class='endpoint-examples'><h3>{escaped(stats.endpoint)}</h3>"
            f"<p class='meta'>{stats.mismatches} of {stats.compared} compared requests differ "
            f"({percent(stats.mismatch_rate())}{vs_baseline}); most frequent differences:</p>"
            f"<ul class='paths'>{paths}</ul>{''.join(example_html(r) for r in found)}</section>"
        )
    examples_html = "".join(sections) or "<p class='meta'>No endpoint differs.</p>"
    note_html = f"<p class='note'>note: {escaped(note)}</p>" if note else ""
    production_ms = [v / 1000 for v in total.production_us]
    shadow_ms = [v / 1000 for v in total.shadow_us]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escaped(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{escaped(title)}</h1><p class='meta'>{escaped(subtitle)}"
        f"{' · ' if subtitle else ''}generated {escaped(generated.isoformat(timespec='seconds'))}"
        f"</p>{note_html}</header>"
        f"<div class='cards'>{card_html}</div>"
        f"<h2>Endpoints</h2>{endpoint_table(rows, total)}"
        "<h2>Charts</h2><div class='charts'>"
        "<figure><figcaption>Latency distribution (cumulative), production vs shadow"
        f"</figcaption>{latency_cdf_svg(production_ms, shadow_ms)}</figure>"
        "<figure><figcaption>Mismatch rate per endpoint</figcaption>"
        f"{mismatch_chart_svg(rows)}</figure></div>"
        f"{transforms_html(rows)}"
        f"<h2>Example differences</h2>{examples_html}</body></html>"
    )
