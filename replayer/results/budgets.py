"""CI gates: budgets on the report's figures (`report --fail-on EXPR`), checked per endpoint.

A budget says what fails a run: `METRIC[ENDPOINT] > LIMIT` (or `>=`). METRIC
is `mismatch_rate` (of compared results), `error_rate` (of results sent, i.e.
not skipped), `pNN_ratio` (shadow pNN latency over production pNN; NN from 1
to 99.9) or `pNN_ms` (shadow pNN latency in milliseconds). `[ENDPOINT]` is
an endpoint as the report names it (`GET /orders/{id}`), `[*]` each endpoint
on its own; without it the budget is on all endpoints together. Rates take
`1%` or `0.01`. `check()` measures every budget on an `Aggregate` and says
which are exceeded; a budget with nothing to measure (no compared results, no
production latency) is not checked and says so. The report's gate,
which prints and writes JUnit, is `results.gate`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from replayer.results.aggregate import Aggregate, EndpointStats
from trafficmirror.plumbing.errors import ConfigError

logger = logging.getLogger(__name__)

#: The name of the budget scope "all endpoints together", as the report's total row.
ALL = "all endpoints"
#: `[*]`: the budget applies to each endpoint on its own.
EACH = "*"

_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z0-9_.]+)\s*(?:\[(?P<endpoint>.*)\])?\s*(?P<op>>=|>)\s*"
    r"(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<pct>%)?\s*$"
)
_LATENCY = re.compile(r"^p(?P<q>[0-9]+(?:\.[0-9]+)?)_(?P<kind>ratio|ms)$")
_RATES = ("mismatch_rate", "error_rate")
SYNTAX = (
    "write METRIC[ENDPOINT]>LIMIT, e.g. 'mismatch_rate>1%', 'error_rate>0.5%', "
    "'p99_ratio>1.3', 'p99_ratio[GET /orders/{id}]>1.5', 'p95_ms[*]>250'; METRIC is "
    "mismatch_rate, error_rate, pNN_ratio or pNN_ms"
)


@dataclass(frozen=True, slots=True)
class Budget:
    """One parsed budget; `text` is how it was written (normalised), for messages."""

    text: str
    metric: str  # mismatch_rate, error_rate, ratio (shadow / production), ms (shadow)
    limit: float
    inclusive: bool = False  # `>=` rather than `>`
    quantile: float | None = None  # for ratio and ms
    endpoint: str | None = None  # None: all endpoints together; EACH: each on its own

    def exceeded_by(self, value: float) -> bool:
        return value >= self.limit if self.inclusive else value > self.limit


def parse_budget(text: str) -> Budget:
    """Parse `METRIC[ENDPOINT]>LIMIT`; raises ConfigError (one line) when it is not one."""
    match = _EXPR.match(text)
    if match is None:
        raise ConfigError(f"{text!r} is not a budget: {SYNTAX}")
    metric = match["metric"].lower()
    endpoint = match["endpoint"]
    if endpoint is not None:
        endpoint = endpoint.strip()
        if not endpoint:
            raise ConfigError(f"{text!r}: the endpoint in [] is empty (use [*] for each one)")
    limit = float(match["value"])
    quantile = None
    if metric in _RATES:
        if match["pct"]:
            if limit > 100:
                raise ConfigError(f"{text!r}: a rate cannot exceed 100%")
            limit /= 100
        elif limit > 1:
            raise ConfigError(
                f"{text!r}: a rate is a fraction (0.05) or a percentage (5%), not {limit:g}"
            )
    else:
        latency = _LATENCY.match(metric)
        if latency is None:
            raise ConfigError(f"{text!r}: unknown metric {match['metric']!r}; {SYNTAX}")
        quantile = float(latency["q"])
        if not 0 < quantile < 100:
            raise ConfigError(f"{text!r}: the percentile must be above 0 and below 100")
        if match["pct"]:
            raise ConfigError(f"{text!r}: a {latency['kind']} limit takes no %")
        metric = latency["kind"]
    where = "" if endpoint is None else f"[{endpoint}]"
    value = match["value"] + ("%" if match["pct"] else "")
    normal = f"{match['metric'].lower()}{where}{match['op']}{value}"
    return Budget(normal, metric, limit, match["op"] == ">=", quantile, endpoint)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A budget measured on one scope (all endpoints, or one endpoint)."""

    budget: Budget
    scope: str  # ALL or an endpoint
    value: float | None  # None: nothing to measure
    detail: str  # the measured figure, or why there is none
    exceeded: bool

    def line(self) -> str:
        """`budget exceeded: mismatch_rate>1% on all endpoints: 3.2% (16 of 500 compared)`."""
        if self.exceeded:
            return f"budget exceeded: {self.budget.text} on {self.scope}: {self.detail}"
        if self.value is None:
            return f"note: budget {self.budget.text} not checked on {self.scope}: {self.detail}"
        return f"budget kept: {self.budget.text} on {self.scope}: {self.detail}"


def _percent(value: float) -> str:
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"


def measure(budget: Budget, stats: EndpointStats) -> tuple[float | None, str]:
    """The budget's figure on `stats`, and how to show it (or why there is none)."""
    if budget.metric == "mismatch_rate":
        if not stats.compared:
            return None, "no compared results"
        value = stats.mismatches / stats.compared
        return value, f"{_percent(value)} ({stats.mismatches} of {stats.compared} compared)"
    if budget.metric == "error_rate":
        sent = stats.requests - stats.skipped
        if not sent:
            return None, "no results sent"
        value = stats.errors / sent
        return value, f"{_percent(value)} ({stats.errors} of {sent} sent)"
    assert budget.quantile is not None  # noqa: S101 (parse_budget sets it for latencies)
    q = budget.quantile
    shadow = stats.latency_ms("shadow", q)
    if shadow is None:
        return None, "no shadow latency"
    if budget.metric == "ms":
        return shadow, f"shadow p{q:g} {shadow:.1f} ms"
    production = stats.latency_ms("production", q)
    if production is None or production <= 0:
        return None, "no production latency (a mirror capture?)"
    ratio = shadow / production
    return ratio, f"{ratio:.2f} (shadow p{q:g} {shadow:.1f} ms / production {production:.1f} ms)"


def check(aggregate: Aggregate, budgets: Sequence[Budget]) -> list[Verdict]:
    """Every budget measured on its scopes, in the order given (endpoints worst first)."""
    endpoints = aggregate.endpoints()
    by_name = {stats.endpoint: stats for stats in endpoints}
    total: EndpointStats | None = None
    verdicts = []
    for budget in budgets:
        if budget.endpoint is None:
            total = total or aggregate.total()
            scopes = [(ALL, total)]
        elif budget.endpoint == EACH:
            scopes = [(stats.endpoint, stats) for stats in endpoints]
        else:
            found = by_name.get(budget.endpoint)
            if found is None:
                note = "no results for this endpoint"
                verdicts.append(Verdict(budget, budget.endpoint, None, note, False))
                continue
            scopes = [(budget.endpoint, found)]
        for scope, stats in scopes:
            value, detail = measure(budget, stats)
            exceeded = value is not None and budget.exceeded_by(value)
            verdicts.append(Verdict(budget, scope, value, detail, exceeded))
    return verdicts
