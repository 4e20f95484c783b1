"""The guardrail options of `worker` and `replay range`, as one click decorator.

The command gets them as a single `guardrails` argument, a validated
`replayer.sending.guard.GuardOptions`: the baseline's own concurrency cap and timeout,
the shadow's error-rate guard and the cap on each response body kept;
`give_up_option` adds `replay range`'s `--give-up-after`. Bad input is a `click.BadParameter` naming
the option (one line, exit code 2). Put it below `comparison_options`, whose
`--baseline` it checks against. Like the rest of the CLI, it imports the
replayer only when a command runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

_GUARD_PARAMS = (
    "baseline_concurrency",
    "baseline_timeout",
    "max_error_rate",
    "error_window",
    "error_min_requests",
    "max_backoff",
    "max_response_bytes",
)

#: Default of `replay range --give-up-after`, in seconds.
DEFAULT_GIVE_UP_AFTER = 300.0


def guardrail_options(func: F) -> F:
    """Options that protect the targets of a replay (worker, replay range).

    The command gets them as one `guardrails` argument, a
    `replayer.sending.guard.GuardOptions`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _GUARD_PARAMS}
        comparison = kwargs.get("comparison")
        baseline = getattr(comparison, "baseline", None)
        kwargs["guardrails"] = build_guardrails(has_baseline=baseline is not None, **values)
        return func(*args, **kwargs)

    options = [
        click.option(
            "--baseline-concurrency",
            type=click.IntRange(1),
            metavar="N",
            help="Requests in flight to the baseline at most: its own cap next to the "
            "shadow's --concurrency (default: the same number).",
        ),
        click.option(
            "--baseline-timeout",
            type=click.FloatRange(0, min_open=True),
            metavar="SECONDS",
            help="Seconds a baseline request may take before it counts as an error "
            "(default: the same as --timeout).",
        ),
        click.option(
            "--max-error-rate",
            type=click.FloatRange(0, 100),
            default=50.0,
            show_default=True,
            metavar="PERCENT",
            help="Back off when more than this percentage of the shadow's requests in the "
            "--error-window got no answer (timeout, refused or reset connection): hold "
            "requests, probe with the next one after 1 s, 2 s, 4 s ... up to --max-backoff, "
            "resume when it answers. 100 turns the guard off.",
        ),
        click.option(
            "--error-window",
            type=click.FloatRange(0, min_open=True),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="Length of the sliding window the shadow's error rate is measured over.",
        ),
        click.option(
            "--error-min-requests",
            type=click.IntRange(1),
            default=20,
            show_default=True,
            metavar="N",
            help="Requests the window must hold before its error rate counts (so a single "
            "failure is not 100 %).",
        ),
        click.option(
            "--max-backoff",
            type=click.FloatRange(1),
            default=30.0,
            show_default=True,
            metavar="SECONDS",
            help="Longest delay between two probes of a shadow the guard backed off from.",
        ),
        click.option(
            "--max-response-bytes",
            type=click.IntRange(1),
            default=4 * 1024 * 1024,
            show_default=True,
            metavar="BYTES",
            help="Keep at most this many bytes of each response body for the comparison; "
            "the rest is counted and hashed as it streams past and the result is flagged "
            "truncated (compared on those bytes and the whole length). At most 16 times this "
            "is held at once across all requests in flight.",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return cast(F, wrapper)


def build_guardrails(
    *,
    has_baseline: bool,
    baseline_concurrency: int | None,
    baseline_timeout: float | None,
    max_error_rate: float,
    error_window: float,
    error_min_requests: int,
    max_backoff: float,
    max_response_bytes: int = 4 * 1024 * 1024,
) -> Any:
    """GuardOptions from the guardrail options; bad input raises click.BadParameter."""
    from replayer.sending.guard import GuardOptions

    for hint, value in (
        ("--baseline-concurrency", baseline_concurrency),
        ("--baseline-timeout", baseline_timeout),
    ):
        if value is not None and not has_baseline:
            raise click.BadParameter("only applies with --baseline", param_hint=hint)
    return GuardOptions(
        baseline_concurrency=baseline_concurrency,
        baseline_timeout=baseline_timeout,
        max_error_rate=max_error_rate / 100,
        error_window=error_window,
        min_requests=error_min_requests,
        max_backoff=max_backoff,
        max_response_bytes=max_response_bytes,
    )


def give_up_option(func: F) -> F:
    """`--give-up-after` (replay range): sets `give_up_after` of the `guardrails` argument.

    Put it right below `guardrail_options`, which builds that argument first.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seconds = kwargs.pop("give_up_after")
        if not math.isfinite(seconds):
            raise click.BadParameter("must be a number of seconds", param_hint="--give-up-after")
        guardrails = kwargs["guardrails"]
        kwargs["guardrails"] = dataclasses.replace(
            guardrails, give_up_after=seconds if seconds > 0 else None
        )
        return func(*args, **kwargs)

    option = click.option(
        "--give-up-after",
        type=click.FloatRange(0),
        default=DEFAULT_GIVE_UP_AFTER,
        show_default=True,
        metavar="SECONDS",
        help="Stop when the guard has backed off from the shadow this long without an answer "
        "to its probes: print the summary with the offsets to resume from and exit 1. "
        "0: wait for the shadow however long it takes.",
    )
    return cast(F, option(wrapper))
