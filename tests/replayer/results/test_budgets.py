"""CI budgets: parsing, measuring per scope, the gate's lines and exit code, the JUnit file."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from replayer.results.aggregate import Aggregate
from replayer.results.budgets import ALL, check, parse_budget
from replayer.results.build import production_latency_us
from replayer.results.gate import BudgetCheck
from replayer.results.junit import render_junit
from tests.replayer.results.test_build import NAME, event, result
from trafficmirror.plumbing.errors import ConfigError

USERS = "GET /users/{id}"
ITEMS = "GET /items/{id}"


def aggregate() -> Aggregate:
    """/users: 10 results, 2 mismatch, shadow 30 ms; /items: 10, 1 error, 9 match, 60 ms."""
    results = []
    for n in range(10):
        diffs = (NAME,) if n < 2 else ()
        results.append(result(f"u{n}", diffs, path=f"/users/{n}".encode(), latency=0.030))
    for n in range(10):
        status = None if n == 0 else 200
        results.append(
            result(f"i{n}", (), shadow_status=status, path=f"/items/{n}".encode(), latency=0.060)
        )
    return Aggregate().add_all(results)


PRODUCTION_MS = production_latency_us(event()) / 1000  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "metric", "limit", "endpoint", "normal"),
    [
        ("mismatch_rate>1%", "mismatch_rate", 0.01, None, "mismatch_rate>1%"),
        (" error_rate > 0.005 ", "error_rate", 0.005, None, "error_rate>0.005"),
        ("p99_ratio>1.3", "ratio", 1.3, None, "p99_ratio>1.3"),
        ("p99_ratio[GET /orders/{id}]>1.5", "ratio", 1.5, "GET /orders/{id}", None),
        ("p95_ms[*]>=250", "ms", 250.0, "*", "p95_ms[*]>=250"),
        ("P99.9_RATIO>2", "ratio", 2.0, None, "p99.9_ratio>2"),
    ],
)
def test_budgets_parse(
    text: str, metric: str, limit: float, endpoint: str | None, normal: str | None
) -> None:
    budget = parse_budget(text)
    assert (budget.metric, budget.limit, budget.endpoint) == (
        metric,
        pytest.approx(limit),
        endpoint,
    )
    assert budget.text == (normal or text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mismatch_rate", "is not a budget"),
        ("mismatch_rate<1%", "is not a budget"),
        ("latency>3", "unknown metric"),
        ("mismatch_rate>5", "a fraction (0.05) or a percentage"),
        ("error_rate>101%", "cannot exceed 100%"),
        ("p99_ratio>1.3%", "takes no %"),
        ("p0_ratio>1", "above 0 and below 100"),
        ("p100_ms>1", "above 0 and below 100"),
        ("p99_ratio[ ]>1", "endpoint in [] is empty"),
        ("p99_ratio>abc", "is not a budget"),
    ],
)
def test_bad_budgets_say_why_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        parse_budget(text)
    assert "\n" not in str(caught.value)


def test_each_budget_is_measured_on_its_scopes() -> None:
    budgets = [
        parse_budget("mismatch_rate>5%"),
        parse_budget("mismatch_rate[*]>15%"),
        parse_budget("error_rate>0.5%"),
        parse_budget(f"p99_ratio[{ITEMS}]>1.5"),
        parse_budget(f"p99_ratio[{USERS}]>1.5"),
        parse_budget("p50_ms[GET /nowhere]>1"),
    ]
    verdicts = check(aggregate(), budgets)
    got = {(v.budget.text, v.scope): v for v in verdicts}
    total = got[("mismatch_rate>5%", ALL)]
    assert total.exceeded and total.value == pytest.approx(2 / 19)  # the error is not compared
    assert "2 of 19 compared" in total.detail
    assert got[("mismatch_rate[*]>15%", USERS)].exceeded  # 2 of 10
    assert not got[("mismatch_rate[*]>15%", ITEMS)].exceeded  # 0 of 9
    assert got[("error_rate>0.5%", ALL)].value == pytest.approx(1 / 20)
    items = got[(f"p99_ratio[{ITEMS}]>1.5", ITEMS)]
    assert items.exceeded and items.value == pytest.approx(60 / PRODUCTION_MS, rel=0.01)
    users = got[(f"p99_ratio[{USERS}]>1.5", USERS)]
    assert not users.exceeded and users.value == pytest.approx(30 / PRODUCTION_MS, rel=0.01)
    nowhere = got[("p50_ms[GET /nowhere]>1", "GET /nowhere")]
    assert nowhere.value is None and not nowhere.exceeded
    assert nowhere.line().startswith("note: budget p50_ms[GET /nowhere]>1 not checked")


def test_the_gate_prints_one_line_per_exceeded_budget_and_exits_1(tmp_path: Path) -> None:
    out = io.StringIO()
    gate = BudgetCheck((parse_budget("mismatch_rate>5%"), parse_budget("p99_ratio>10")))
    assert gate(aggregate(), out) == 1
    lines = out.getvalue().splitlines()
    assert lines == [
        "budget exceeded: mismatch_rate>5% on all endpoints: 10.53% (2 of 19 compared)"
    ]
    out = io.StringIO()
    kept = BudgetCheck((parse_budget("mismatch_rate>11%"), parse_budget("error_rate>=10%")))
    assert kept(aggregate(), out) == 0
    assert out.getvalue() == "budgets kept: mismatch_rate>11%, error_rate>=10%\n"
    # An empty aggregate measures nothing: noted, not failed.
    out = io.StringIO()
    assert kept(Aggregate(), out) == 0
    assert "not checked on all endpoints: no compared results" in out.getvalue()


def test_junit_has_a_case_per_endpoint_failed_by_its_budgets(tmp_path: Path) -> None:
    path = tmp_path / "gate.xml"
    budgets = (parse_budget("error_rate>1%"), parse_budget("mismatch_rate[*]>0"))
    gate = BudgetCheck(budgets, junit_path=str(path), suite="trafficmirror report: t")
    out = io.StringIO()
    assert gate(aggregate(), out) == 1
    assert f"JUnit report written to {path}" in out.getvalue()
    root = ET.parse(path).getroot()  # noqa: S314 (our own file)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == [ALL, USERS, ITEMS]  # total first, then worst first
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    assert [p.get("value") for p in suite.iter("property")] == [
        "error_rate>1%",
        "mismatch_rate[*]>0",
    ]
    total_failure = cases[ALL].find("failure")
    assert total_failure is not None and "error_rate>1%: 5% (1 of 20 sent)" in (
        total_failure.get("message") or ""
    )
    users_failure = cases[USERS].find("failure")
    assert users_failure is not None and "mismatch_rate[*]>0: 20%" in (
        users_failure.get("message") or ""
    )
    assert cases[ITEMS].find("failure") is None
    figures = cases[ITEMS].findtext("system-out") or ""
    assert "requests: 10" in figures and "errors: 1" in figures


def test_junit_without_budgets_passes_every_case() -> None:
    xml = render_junit(aggregate(), [], suite="s")
    root = ET.fromstring(xml)  # noqa: S314 (our own output)
    assert root.get("failures") == "0" and root.get("tests") == "3"
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
