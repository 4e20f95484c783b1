"""The pace options of `worker` and `replay range` (--speed, --max-gap, --rate), one decorator.

The command gets them as a single `pace` argument, a validated
`replayer.pacing.clock.Pace`; bad input is a `click.BadParameter` naming the option
(one line, exit code 2). The defaults differ by command: `replay range`
replays at the recorded pace (`--speed 1`), a `worker` without a session as
records arrive (`--speed max`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

_PACE_PARAMS = ("speed", "max_gap", "rate")


def parse_speed(value: str) -> float | None:
    """`max` (None: as fast as possible) or a finite factor above 0."""
    if value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a number nor 'max'", param_hint="--speed"
        ) from None
    if not (math.isfinite(speed) and speed > 0):
        raise click.BadParameter(
            f"{value!r}: the speed must be a finite number above 0, or 'max'", param_hint="--speed"
        )
    return speed


def _positive(hint: str) -> Callable[[click.Context, click.Parameter, float | None], float | None]:
    def check(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise click.BadParameter(f"{value!r}: must be a finite number above 0", param_hint=hint)
        return value

    return check


def pace_options(default_speed: str) -> Callable[[F], F]:
    """Options --speed, --max-gap, --rate; the command gets one `pace` (a `Pace`)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in _PACE_PARAMS}
            kwargs["pace"] = build_pace(**values)
            return func(*args, **kwargs)

        options = [
            click.option(
                "--speed",
                default=default_speed,
                show_default=True,
                envvar="TRAFFICMIRROR_SPEED",
                metavar="X|max",
                help="Time warp: 1 replays at the recorded pace, 2 twice as fast, 0.5 at half "
                "speed; each exchange is sent when due on this virtual clock, never early. "
                "'max' sends as fast as --rate and --concurrency allow (env TRAFFICMIRROR_SPEED).",
            ),
            click.option(
                "--max-gap",
                type=float,
                callback=_positive("--max-gap"),
                metavar="SECONDS",
                envvar="TRAFFICMIRROR_MAX_GAP",
                help="Recorded idle stretches longer than this are cut to it (before --speed "
                "applies), so a quiet night does not stall a replay (env TRAFFICMIRROR_MAX_GAP).",
            ),
            click.option(
                "--rate",
                type=float,
                callback=_positive("--rate"),
                metavar="R",
                envvar="TRAFFICMIRROR_RATE",
                help="Ceiling in requests/s; requests over it are delayed, never dropped. "
                "Workers of one group split it by their share of the partitions, so the "
                "group as a whole holds R (env TRAFFICMIRROR_RATE).",
            ),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return cast(F, wrapper)

    return decorate


def build_pace(*, speed: str, max_gap: float | None, rate: float | None) -> Any:
    """A `replayer.pacing.clock.Pace` from the option values; bad input is click.BadParameter."""
    from replayer.pacing.clock import Pace

    return Pace(speed=parse_speed(speed), rate=rate, max_gap=max_gap)
