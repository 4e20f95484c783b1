"""The selection options of `replay range`, `worker` and `inspect`, as one click decorator.

The command gets them as a single `selection` argument, a validated
`replayer.selecting.selector.SelectOptions`; bad input is a `click.BadParameter` naming the
option (one line, exit code 2). mitmproxy (for `--filter`) is imported only
when a filter is given, so `--help` and every other run stay fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

_WINDOW = ("since", "until")
_CHOICE = ("sample", "filter_expr", "methods")


def selection_options(*, window: bool = True, choice: bool = True) -> Callable[[F], F]:
    """`--since`/`--until` (with `window`) and `--sample`/`--filter`/`--methods` (with `choice`)."""

    def decorate(func: F) -> F:
        names = (_WINDOW if window else ()) + (_CHOICE if choice else ())

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            kwargs["selection"] = build_selection(**values)
            return func(*args, **kwargs)

        options = []
        if window:
            options += [
                click.option(
                    "--since",
                    metavar="TIME",
                    help="Only exchanges whose request started at or after TIME: ISO 8601 "
                    "(2024-05-01T10:00 is local time; add Z or +02:00 for another zone), "
                    "relative (-15m, -2h, -1d) or now. replay range: with --start-offset/"
                    "--end-offset, the window's exchanges within those offsets.",
                ),
                click.option(
                    "--until",
                    metavar="TIME",
                    help="Only exchanges whose request started before TIME (exclusive; same "
                    "formats as --since).",
                ),
            ]
        if choice:
            options += [
                click.option(
                    "--sample",
                    type=click.FloatRange(0, 100, min_open=True),
                    default=100.0,
                    envvar="TRAFFICMIRROR_SAMPLE",
                    metavar="PCT",
                    help="Replay only this percentage of the recorded client connections, each "
                    "with all its requests; the same ones on every run and every worker "
                    "(a stable hash of the message key). Default 100 (env TRAFFICMIRROR_SAMPLE).",
                ),
                click.option(
                    "--filter",
                    "filter_expr",
                    envvar="TRAFFICMIRROR_FILTER",
                    metavar="EXPR",
                    help="Replay only exchanges matching this mitmproxy filter expression, "
                    "e.g. '~m GET & ~u /api & !~c 500' (env TRAFFICMIRROR_FILTER).",
                ),
                click.option(
                    "--methods",
                    default="GET,HEAD,OPTIONS",
                    show_default=True,
                    envvar="TRAFFICMIRROR_METHODS",
                    metavar="LIST",
                    help="Comma-separated methods to send; ALL sends writes (POST, PUT, "
                    "DELETE ...) too, which a shadow that shares state with production must "
                    "not get (env TRAFFICMIRROR_METHODS).",
                ),
            ]
        result: Any = wrapper
        for option in reversed(options):
            result = option(result)
        return cast(F, result)

    return decorate


def _time_ms(value: str | None, hint: str) -> int | None:
    from replayer.consuming.timespec import parse_time
    from trafficmirror.plumbing.errors import ConfigError

    if value is None:
        return None
    try:
        return round(parse_time(value).timestamp() * 1000)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def build_selection(
    *,
    since: str | None = None,
    until: str | None = None,
    sample: float = 100.0,
    filter_expr: str | None = None,
    methods: str | None = None,
) -> Any:
    """SelectOptions from the selection options; bad input raises click.BadParameter."""
    from replayer.selecting.selector import SAFE_METHODS, SelectOptions, parse_methods

    since_ms, until_ms = _time_ms(since, "--since"), _time_ms(until, "--until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise click.BadParameter(f"{since!r} is not before --until {until!r}", param_hint="--since")
    if filter_expr is not None:
        from replayer.selecting.eventfilter import parse_filter
        from trafficmirror.plumbing.errors import ConfigError

        try:
            parse_filter(filter_expr)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--filter") from None
    chosen: frozenset[str] | None = SAFE_METHODS
    if methods is not None:
        try:
            chosen = parse_methods(methods)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--methods") from None
    return SelectOptions(
        since_ms=since_ms,
        until_ms=until_ms,
        sample_pct=sample,
        filter_expr=filter_expr,
        methods=chosen,
    )


def check_window_or_offsets(
    selection: Any,
    start_offset: int | None,
    end_offset: str,
    required: bool,
    combine: bool = False,
) -> None:
    """A time window and offsets exclude each other unless `combine` (the window within the
    offsets); `required`: one of them must be given."""
    offsets = start_offset is not None or end_offset != "end"
    if selection.windowed and offsets and not combine:
        raise click.BadParameter(
            "--since/--until and --start-offset/--end-offset cannot be combined: give a time "
            "window or offsets",
            param_hint="--since",
        )
    if required and not selection.windowed and start_offset is None:
        raise click.BadParameter(
            "give --start-offset, or a time window with --since/--until",
            param_hint="--start-offset",
        )
