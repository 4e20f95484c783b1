"""The transforms applied, in results, their aggregation, the terminal report and the HTML."""

from __future__ import annotations

from typing import Any

from replayer.comparing.responses import Difference
from replayer.results.aggregate import Aggregate
from replayer.results.html import render_html
from replayer.results.report import format_table
from tests.replayer.results.test_build import result

NAME = Difference("body_json", "$.user.name", '"a"', '"b"')


def results() -> list[dict[str, Any]]:
    return [
        result("ex-1", path=b"/orders/17", transforms=["auth", "order-id"]),
        result("ex-2", path=b"/orders/18", transforms=["auth"]),
        result("ex-3", path=b"/users/1", transforms=["auth"], differences=(NAME,)),
        result("ex-4", path=b"/items/1"),
    ]


def test_results_list_the_transforms_applied_in_order() -> None:
    assert results()[0]["transforms"] == ["auth", "order-id"]
    assert results()[3]["transforms"] == []


def test_the_aggregate_counts_requests_changed_per_endpoint_and_transform() -> None:
    aggregate = Aggregate().add_all(results())  # type: ignore[arg-type]
    by_endpoint = {s.endpoint: s for s in aggregate.endpoints()}
    assert by_endpoint["GET /orders/{id}"].transforms == {"auth": 2, "order-id": 1}
    assert not by_endpoint["GET /items/{id}"].transforms
    assert aggregate.total().transforms == {"auth": 3, "order-id": 1}


def test_the_terminal_report_and_the_html_show_them() -> None:
    aggregate = Aggregate().add_all(results())  # type: ignore[arg-type]
    table = format_table(aggregate)
    assert "Transforms applied (requests changed, by rule name):" in table
    assert "  GET /orders/{id}: auth ×2, order-id ×1" in table
    assert "GET /items/{id}:" not in table.split("Transforms applied")[1]
    page = render_html(aggregate)
    assert "<h2>Transforms applied</h2>" in page
    assert "<td>GET /orders/{id}</td><td>auth × 2, order-id × 1</td>" in page
    assert " · transforms auth</p>" in page  # the mismatching example names them too


def test_without_transforms_the_report_says_nothing_about_them() -> None:
    aggregate = Aggregate().add_all([result("ex-9")])  # type: ignore[list-item]
    assert "Transforms applied" not in format_table(aggregate)
    assert "Transforms applied" not in render_html(aggregate)
