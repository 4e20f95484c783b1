"""The replay-safety option of `worker` and `replay range`, as one click decorator.

The command gets it as a single `safety` argument, a
`replayer.selecting.safety.SafetyOptions`; the replayer is imported only when a command
runs, so `--help` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def safety_options(func: F) -> F:
    """`--allow-original-host`, passed to the command as `safety` (a `SafetyOptions`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from replayer.selecting.safety import SafetyOptions

        kwargs["safety"] = SafetyOptions(allow_original_host=kwargs.pop("allow_original_host"))
        return func(*args, **kwargs)

    option = click.option(
        "--allow-original-host",
        is_flag=True,
        help="Also send records whose recorded host (the event's authority, host and port, "
        "default ports filled in, loopback names as one) is the target's. Without it they are "
        "skipped and counted as skipped-original-host: replaying production traffic to "
        "production is refused.",
    )
    return option(wrapper)  # type: ignore[return-value]
