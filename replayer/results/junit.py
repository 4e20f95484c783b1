"""JUnit XML for CI systems (`report --junit FILE`): one test case per endpoint.

CI servers (GitHub Actions reporters, GitLab's `artifacts:reports:junit`,
Jenkins) show JUnit files as test results, so a replay's gate reads like a
test run: a test case `all endpoints` for the budgets on the whole, then one
per endpoint, worst first, each failed when a budget on it (named, or `[*]`)
is exceeded; its `system-out` holds the endpoint's figures. The layout is the
common subset of the JUnit dialects (Jenkins' `junit-10.xsd`): `testsuites` >
`testsuite` (`properties` with each budget) > `testcase` (`failure`).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET  # noqa: S405 (writes XML, parses none)
from collections.abc import Sequence

from replayer.results.aggregate import Aggregate, EndpointStats
from replayer.results.budgets import ALL, Verdict


def _figures(stats: EndpointStats) -> str:
    """The endpoint's figures, one `name: value` a line, for `system-out`."""
    lines = [
        f"requests: {stats.requests}",
        f"compared: {stats.compared} (match {stats.matches}, mismatch {stats.mismatches})",
        f"errors: {stats.errors}",
        f"skipped: {stats.skipped}",
    ]
    for side in ("production", "shadow"):
        values = [stats.latency_ms(side, q) for q in (50, 95, 99)]
        shown = "/".join("-" if v is None else f"{v:.1f}" for v in values)
        lines.append(f"{side} latency p50/p95/p99 ms: {shown}")
    return "\n".join(lines) + "\n"


def _case(
    suite: ET.Element, name: str, stats: EndpointStats, verdicts: Sequence[Verdict], classname: str
) -> bool:
    case = ET.SubElement(suite, "testcase", name=name, classname=classname, time="0")
    failed = [v for v in verdicts if v.exceeded]
    if failed:
        failure = ET.SubElement(
            case,
            "failure",
            message="; ".join(f"{v.budget.text}: {v.detail}" for v in failed),
            type="budget exceeded",
        )
        failure.text = "\n".join(v.line() for v in failed) + "\n"
    ET.SubElement(case, "system-out").text = _figures(stats) + "".join(
        v.line() + "\n" for v in verdicts
    )
    return bool(failed)


def render_junit(
    aggregate: Aggregate,
    verdicts: Sequence[Verdict],
    *,
    suite: str = "trafficmirror report",
    now: dt.datetime | None = None,
) -> bytes:
    """The JUnit XML document (UTF-8 bytes with declaration) for the report and its verdicts."""
    now = now or dt.datetime.now(dt.UTC)
    classname = "trafficmirror.report"
    root = ET.Element("testsuites", name=suite)
    element = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        timestamp=now.replace(tzinfo=None, microsecond=0).isoformat(),
        hostname="localhost",
        time="0",
    )
    properties = ET.SubElement(element, "properties")
    for text in dict.fromkeys(v.budget.text for v in verdicts):
        ET.SubElement(properties, "property", name="budget", value=text)
    scopes: list[tuple[str, EndpointStats]] = [(ALL, aggregate.total())]
    scopes += [(stats.endpoint, stats) for stats in aggregate.endpoints()]
    failures = 0
    for name, stats in scopes:
        mine = [v for v in verdicts if v.scope == name]
        failures += _case(element, name, stats, mine, classname)
    count = str(len(scopes))
    for node in (root, element):
        node.set("tests", count)
        node.set("failures", str(failures))
        node.set("errors", "0")
    element.set("skipped", "0")
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
