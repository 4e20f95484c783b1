"""The CI-gate options of `report` (--fail-on, --junit), as one click decorator.

The command gets them as one `gate` argument: a
`replayer.results.gate.BudgetCheck`, or None when neither is given. Each
--fail-on is parsed before anything connects; a bad one is a
`click.BadParameter` naming the option (one line, exit 2), and so is a
--junit file in a folder that does not exist.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

#: What `--fail-on-mismatch` means as a budget, so the JUnit file shows which endpoints differ.
ANY_MISMATCH = "mismatch_rate[*]>0"


def _budgets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    from replayer.results.budgets import parse_budget
    from trafficmirror.plumbing.errors import ConfigError

    budgets = []
    for text in values:
        try:
            budgets.append(parse_budget(text))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--fail-on") from None
    return tuple(budgets)


def _junit(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"folder {folder} does not exist", param_hint="--junit")
    return value


def budget_options(func: F) -> F:
    """Options --fail-on (repeatable) and --junit; the command gets one `gate`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        budgets = kwargs.pop("budgets")
        junit = kwargs.pop("junit_path")
        gate = None
        if budgets or junit is not None:
            from replayer.results.budgets import parse_budget
            from replayer.results.gate import BudgetCheck

            if kwargs.get("fail_on_mismatch"):
                budgets = (*budgets, parse_budget(ANY_MISMATCH))
            suite = f"trafficmirror report: {kwargs['topic']}"
            gate = BudgetCheck(budgets, junit_path=junit, suite=suite)
        kwargs["gate"] = gate
        return func(*args, **kwargs)

    options = [
        click.option(
            "--fail-on",
            "budgets",
            multiple=True,
            callback=_budgets,
            metavar="EXPR",
            help="A budget that fails the run (exit 1, one line per exceeded budget); "
            "repeatable, all are checked. EXPR is METRIC[ENDPOINT]>LIMIT (or >=): METRIC "
            "mismatch_rate or error_rate (LIMIT as 1% or 0.01), pNN_ratio (shadow pNN "
            "latency over production pNN, e.g. p99_ratio>1.3) or pNN_ms (shadow pNN in ms). "
            "Without [ENDPOINT] on all endpoints together; [GET /orders/{id}] on that "
            "endpoint as the table names it; [*] on each endpoint on its own. A budget with "
            "nothing to measure is noted, not failed.",
        ),
        click.option(
            "--junit",
            "junit_path",
            type=click.Path(dir_okay=False),
            callback=_junit,
            metavar="FILE",
            help="Also write JUnit XML to FILE for CI systems: a test case 'all endpoints' "
            "and one per endpoint, failed when a --fail-on budget on it is exceeded "
            "(with --fail-on-mismatch: when it has a mismatch).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return cast(F, wrapper)
