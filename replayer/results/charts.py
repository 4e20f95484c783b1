"""The charts of the HTML report, as inline SVG: latency distribution and mismatch rate.

`latency_cdf_svg` draws production's and the shadow's cumulative latency
distributions (on a log scale when the latencies span more than 20 times);
`mismatch_chart_svg` draws the mismatch rate of the worst endpoints as bars,
the share that differs in noise only in grey. Inline SVG, drawn here as text,
keeps the report one self-contained file with no script and nothing from the
network. Every label comes from recorded traffic, which is untrusted:
`escaped()` is the report's one escaper, and `html.py` uses it for the page too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from replayer.comparing.endpoints import printable
from replayer.results.aggregate import EndpointStats

PRODUCTION_COLOR = "#2563eb"
SHADOW_COLOR = "#ea580c"
MISMATCH_COLOR = "#dc2626"
NOISE_COLOR = "#a3a3a3"
#: Endpoints drawn in the mismatch chart (the worst ones).
CHART_ENDPOINTS = 20
#: Points per line in the latency CDF (quantiles), enough for a smooth curve.
CDF_POINTS = 200


def escaped(value: Any) -> str:
    """`value` as text for HTML or SVG: printable, with `&`, `<`, `>` and quotes escaped."""
    return escape(printable(str(value)), quote=True)


def percent(rate: float) -> str:
    """A rate (0-1) as a percentage with one decimal."""
    return f"{rate * 100:.1f}%"


def _nice_linear_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low or 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step / 2:
        if value >= low - 1e-9:
            ticks.append(value)
        value += step
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if low <= value <= high:
                ticks.append(value)
    return ticks


def _quantile(ordered: Sequence[float], q: float) -> float:
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _empty_chart(width: int, height: int, label: str, message: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{escaped(label)}'>"
        f"<text x='{width / 2}' y='{height / 2}' text-anchor='middle'>"
        f"{escaped(message)}</text></svg>"
    )


def latency_cdf_svg(production_ms: Sequence[float], shadow_ms: Sequence[float]) -> str:
    """An SVG with the cumulative latency distributions of production and shadow."""
    width, height = 640, 320
    left, right, top, bottom = 52, 16, 28, 40
    label = "Latency distribution, production vs shadow"
    values = [v for v in (*production_ms, *shadow_ms) if v >= 0]
    if not values:
        return _empty_chart(width, height, label, "no latency data")
    low, high = min(values), max(values)
    positive = [v for v in values if v > 0]
    use_log = bool(positive) and max(positive) / min(positive) > 20
    if use_log:
        low = min(positive)
        lo_log, hi_log = math.log10(low), math.log10(max(high, low * 1.01))

        def x_of(v: float) -> float:
            frac = (math.log10(max(v, low)) - lo_log) / (hi_log - lo_log)
            return left + frac * (width - left - right)

        ticks = _log_ticks(low, high)
    else:
        high = high if high > low else low + 1

        def x_of(v: float) -> float:
            return left + (v - low) / (high - low) * (width - left - right)

        ticks = _nice_linear_ticks(low, high)

    def y_of(fraction: float) -> float:
        return top + (1 - fraction) * (height - top - bottom)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{escaped(label)}' class='cdf'>",
        f"<rect x='{left}' y='{top}' width='{width - left - right}' "
        f"height='{height - top - bottom}' fill='#fff' stroke='#d1d5db'/>",
    ]
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        y = y_of(fraction)
        parts.append(
            f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>"
            f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{fraction * 100:.0f}%</text>"
        )
    for tick in ticks:
        x = x_of(tick)
        parts.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{height - bottom}' stroke='#eee'/>"
            f"<text x='{x:.1f}' y='{height - bottom + 14}' text-anchor='middle'>{tick:g}</text>"
        )
    parts.append(
        f"<text x='{(left + width - right) / 2}' y='{height - 6}' text-anchor='middle'>"
        f"latency, ms{' (log scale)' if use_log else ''}</text>"
    )
    for name, series, color, offset in (
        ("production", production_ms, PRODUCTION_COLOR, 0),
        ("shadow", shadow_ms, SHADOW_COLOR, 110),
    ):
        parts.append(
            f"<rect x='{left + 8 + offset}' y='8' width='12' height='12' fill='{color}'/>"
            f"<text x='{left + 24 + offset}' y='18'>{name} ({len(series)})</text>"
        )
        if series:
            ordered = sorted(series)  # once: a quantile per point would sort again each time
            points = []
            for i in range(CDF_POINTS + 1):
                q = i / CDF_POINTS
                points.append(f"{x_of(_quantile(ordered, q)):.1f},{y_of(q):.1f}")
            parts.append(
                f"<polyline class='series {name}' fill='none' stroke='{color}' "
                f"stroke-width='2' points='{' '.join(points)}'/>"
            )
    parts.append("</svg>")
    return "".join(parts)


def mismatch_chart_svg(rows: Sequence[EndpointStats]) -> str:
    """Horizontal bars: the mismatch rate of each endpoint, noise-only share in grey."""
    width = 640
    label = "Mismatch rate per endpoint"
    shown = [s for s in rows if s.compared][:CHART_ENDPOINTS]
    if not shown:
        return _empty_chart(width, 120, label, "no compared results")
    left, right, top, bar, gap = 250, 60, 26, 16, 8
    height = top + len(shown) * (bar + gap) + 24
    span = width - left - right
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{escaped(label)}' class='bars'>",
        f"<rect x='{left + 8}' y='6' width='12' height='12' fill='{MISMATCH_COLOR}'/>"
        f"<text x='{left + 24}' y='16'>mismatch</text>"
        f"<rect x='{left + 100}' y='6' width='12' height='12' fill='{NOISE_COLOR}'/>"
        f"<text x='{left + 116}' y='16'>differs in noise only</text>",
    ]
    for fraction in (0, 0.5, 1):
        x = left + fraction * span
        parts.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top - 4}' y2='{height - 20}' stroke='#e5e7eb'/>"
            f"<text x='{x:.1f}' y='{height - 6}' text-anchor='middle'>{fraction * 100:.0f}%</text>"
        )
    for i, stats in enumerate(shown):
        y = top + i * (bar + gap)
        rate = stats.mismatch_rate()
        noise = stats.noise_only / stats.compared
        name = stats.endpoint if len(stats.endpoint) <= 38 else stats.endpoint[:37] + "…"
        parts.append(
            f"<text x='{left - 8}' y='{y + bar - 4}' text-anchor='end'>"
            f"<title>{escaped(stats.endpoint)}</title>{escaped(name)}</text>"
            f"<rect x='{left}' y='{y}' width='{span}' height='{bar}' fill='#f3f4f6'/>"
            f"<rect class='mismatch' x='{left}' y='{y}' width='{max(rate * span, 0):.1f}' "
            f"height='{bar}' fill='{MISMATCH_COLOR}'/>"
            f"<rect class='noise' x='{left + rate * span:.1f}' y='{y}' "
            f"width='{noise * span:.1f}' height='{bar}' fill='{NOISE_COLOR}'/>"
            f"<text x='{left + span + 6}' y='{y + bar - 4}'>{percent(rate)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
