"""The warning for a selection that keeps nothing: only then, with each reason and a hint."""

from __future__ import annotations

from replayer.consuming.keptnothing import nothing_kept, window_only
from replayer.results.summary import Stats
from replayer.selecting.selector import SelectOptions


def stats(sent: int = 0, undecodable: int = 0, **skipped: int) -> Stats:
    tally = Stats(sent=sent, undecodable=undecodable)
    tally.skipped.update({k.replace("_", "-"): v for k, v in skipped.items()})
    return tally


def test_silent_while_something_is_kept_or_nothing_was_dropped() -> None:
    options = SelectOptions(filter_expr="~u /api")
    assert nothing_kept(stats(sent=1, filter=9), options) is None
    assert nothing_kept(stats(truncated=1, filter=3), options) is None  # one kept, then cut
    assert nothing_kept(stats(), options) is None
    assert nothing_kept(stats(undecodable=2), options) is None


def test_every_reason_is_named_with_its_count() -> None:
    options = SelectOptions(sample_pct=10, filter_expr="~u /api & ~m GET")
    text = nothing_kept(stats(undecodable=1, sample=5, method=3, filter=2), options)
    assert text == (
        "the selection kept none of the 10 records read: dropped 5 outside the --sample of "
        "10%; 3 by --methods (only GET, HEAD, OPTIONS; --methods ALL sends writes too); "
        "2 by --filter '~u /api & ~m GET' (it matched none of them; mitmproxy filters "
        "look like '~m GET & ~u /api & !~c 500')"
    )


def test_a_filter_without_operators_gets_the_bare_word_hint() -> None:
    text = nothing_kept(stats(filter=4), SelectOptions(filter_expr="method == GET"))
    assert text is not None and "it uses no ~ operator, so each word must match the URL" in text


def test_only_the_window_is_not_a_mistake() -> None:
    assert window_only(stats(outside_window=4))
    assert not window_only(stats(outside_window=4, method=1))
    text = nothing_kept(stats(outside_window=4), SelectOptions(since_ms=0))
    assert (
        text == "the selection kept none of the 4 records read: dropped 4 outside the time window"
    )
