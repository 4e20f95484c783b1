"""The warning for a selection that kept none of the records it saw, and why.

A replay whose selection drops everything sends nothing and compares nothing,
which is almost always a mistake: a filter that is not the mitmproxy syntax
(`--filter 'method == GET'` is three bare words, each matched against the URL),
writes left out by the default `--methods`, a window or a sample that misses.
`nothing_kept()` names each reason with its count, adds a filter syntax hint
when the filter dropped what reached it, and says nothing while anything was
kept. `replay range` prints it and exits 3 (`window_only()` tells the one case
that exits 0 as an empty window does); a worker logs it once.
"""

from __future__ import annotations

from replayer.results.summary import Stats
from replayer.selecting.selector import FILTER, METHOD, OUTSIDE_WINDOW, SAMPLE, SelectOptions

#: Skip reasons that are the selection's (the rest are the guard's or the sender's).
SELECTION_REASONS = (OUTSIDE_WINDOW, SAMPLE, METHOD, FILTER)

_FILTER_SYNTAX = "mitmproxy filters look like '~m GET & ~u /api & !~c 500'"


def selection_drops(stats: Stats) -> dict[str, int]:
    """What the selection dropped, by reason (only reasons that dropped something)."""
    return {r: stats.skipped[r] for r in SELECTION_REASONS if stats.skipped.get(r)}


def nothing_kept(stats: Stats, selection: SelectOptions) -> str | None:
    """One line saying the selection kept none of the records and why, or None if it kept some."""
    drops = selection_drops(stats)
    dropped = sum(drops.values())
    if not dropped or stats.handled - stats.undecodable > dropped:
        return None
    why = []
    for reason, count in drops.items():
        if reason == OUTSIDE_WINDOW:
            why.append(f"{count} outside the time window")
        elif reason == SAMPLE:
            why.append(f"{count} outside the --sample of {selection.sample_pct:g}%")
        elif reason == METHOD:
            methods = ", ".join(sorted(selection.methods or ()))
            why.append(f"{count} by --methods (only {methods}; --methods ALL sends writes too)")
        elif reason == FILTER:
            why.append(f"{count} by --filter {selection.filter_expr!r}{_filter_hint(selection)}")
    return f"the selection kept none of the {dropped} records read: dropped " + "; ".join(why)


def window_only(stats: Stats) -> bool:
    """True when only the time window dropped records (an empty window, not a mistake)."""
    return set(selection_drops(stats)) == {OUTSIDE_WINDOW}


def _filter_hint(selection: SelectOptions) -> str:
    expr = selection.filter_expr or ""
    if "~" not in expr:
        return f" (it uses no ~ operator, so each word must match the URL; {_FILTER_SYNTAX})"
    return f" (it matched none of them; {_FILTER_SYNTAX})"
