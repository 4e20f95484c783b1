"""The capacity-test options of `worker` and `replay range` (--amplify, --amplify-writes).

The command gets them as one `amplify` argument, a
`replayer.pacing.amplify.Amplify`; a factor below 1, above the maximum or not
a number is a `click.BadParameter` naming the option (one line, exit 2). The
replayer is imported only when the command runs, so `--help` stays fast.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Kept equal to `replayer.pacing.amplify.MAX_FACTOR` (a test checks).
MAX_FACTOR = 100.0


def _factor(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 1.0 <= value <= MAX_FACTOR):
        raise click.BadParameter(
            f"{value!r}: the factor must be between 1 and {MAX_FACTOR:g} "
            "(to send fewer records, use --sample)",
            param_hint="--amplify",
        )
    return value


def amplify_options(func: F) -> F:
    """Options --amplify and --amplify-writes; the command gets one `amplify` (an `Amplify`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from replayer.pacing.amplify import Amplify

        factor = kwargs.pop("amplify_factor")
        writes = kwargs.pop("amplify_writes")
        kwargs["amplify"] = Amplify(factor=1.0 if factor is None else factor, writes=writes)
        return func(*args, **kwargs)

    options = [
        click.option(
            "--amplify",
            "amplify_factor",
            type=float,
            callback=_factor,
            metavar="N",
            envvar="TRAFFICMIRROR_AMPLIFY",
            help="Capacity test: send each selected record N times (1 to 100; a fraction "
            "such as 2.5 sends 2 or 3, chosen by a hash of the record's key, so one recorded "
            "connection always gets the same number). The copies are spread within the "
            "record's slot of recorded time, so the recorded shape holds at N times the "
            "volume; each is marked X-Trafficmirror-Replay: <id>/<copy>, goes to the shadow "
            "only, and is counted but not compared. --speed and --rate apply to copies too. "
            "Default: 1, no copies (env TRAFFICMIRROR_AMPLIFY).",
        ),
        click.option(
            "--amplify-writes",
            is_flag=True,
            help="Also amplify writes (methods other than GET, HEAD, OPTIONS, TRACE); "
            "without it a write is sent once, whatever --amplify says.",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return cast(F, wrapper)
