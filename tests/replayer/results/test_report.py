"""The report: terminal table, HTML page, and reading results back from Kafka."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from replayer.comparing.responses import KINDS, Difference, ResponseView
from replayer.results.aggregate import Aggregate
from replayer.results.build import build_result, result_key
from replayer.results.charts import latency_cdf_svg, mismatch_chart_svg
from replayer.results.html import render_html
from replayer.results.report import collect, format_table, run_report, summary_line
from replayer.results.terminal import runs_note, use_color
from schemas.codec import Codec
from tests.support import Kafka
from trafficmirror.plumbing.errors import ConfigError, TopicNotFound
from trafficmirror.plumbing.kafka import KafkaSettings

T0 = 1_700_000_000_000_000  # µs
EVIL = "<img src=x onerror=alert(1)>"


def _event(i: int, method: str, path: str, prod_ms: float, mirror: bool = False) -> dict[str, Any]:
    start = T0 + i * 1000
    if mirror:  # `record --mirror`: the recorder answered, no production response
        return {
            "id": f"ex-{i}",
            "request_start_us": start,
            "request_end_us": start + 100,
            "response_start_us": None,
            "response_end_us": None,
            "method": method,
            "path": path.encode(),
            "response": None,
            "error": None,
            "recorder": {"capture": "mirror"},
        }
    return {
        "id": f"ex-{i}",
        "request_start_us": start,
        "request_end_us": start + 100,
        "response_start_us": start + 100 + int(prod_ms * 500),
        "response_end_us": start + 100 + int(prod_ms * 1000),
        "method": method,
        "path": path.encode(),
        "response": {"status": 200},
        "error": None,
        "recorder": {"capture": "proxy"},
    }


def synthetic_results(seed: int = 7) -> list[dict[str, Any]]:
    """Results of a replay over five endpoints: one differs for real, one only in
    noise, one is identical, one has errors, one carries hostile markup; plus
    some results delivered twice."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    i = 0

    def add(method: str, path: str, diffs: tuple[Difference, ...] = (), **kw: Any) -> None:
        nonlocal i
        i += 1
        prod_ms = rng.lognormvariate(3.0, 0.5)
        shadow_ms = prod_ms * rng.uniform(1.1, 1.8)
        status = kw.pop("shadow_status", 200)
        out.append(
            build_result(
                _event(i, method, path, prod_ms),
                topic="traffic",
                partition=i % 4,
                offset=i,
                target="http://shadow:8080",
                sent_us=T0 + i * 1000 + 5,
                shadow=ResponseView(status) if status is not None else None,
                shadow_latency_s=shadow_ms / 1000,
                error=None if status is not None else "connection refused",
                differences=diffs,
                **kw,
            )
        )

    for n in range(200):
        diffs: tuple[Difference, ...] = ()
        if n % 7 == 0:
            diffs = (
                Difference("body_json", "$.user.name", f'"user {n}"', f'"User {n}"'),
                Difference("header", "x-date", "a", "b", noise=True),
            )
        add("GET", f"/users/{n}", diffs)
    for n in range(150):
        add("GET", f"/orders/{n}", (Difference("body_json", "$.timestamp", "1", "2", noise=True),))
    for _ in range(100):
        add("POST", "/api/v2/items")
    for n in range(80):
        if n % 10 == 0:
            add("GET", f"/search?q={n}", shadow_status=None)
        elif n % 10 == 1:
            status = (Difference("status", "status", "200", "500"),)
            add("GET", f"/search?q={n}", status, shadow_status=500)
        else:
            add("GET", f"/search?q={n}")
    for _ in range(3):
        add(
            "GET",
            "/evil/<script>alert(1)</script>",
            (Difference("body_text", "line 1", EVIL, "</td></tr></table><h1>pwned</h1>"),),
        )
    # At-least-once: a few exchanges replayed and reported twice.
    out.extend(dict(r) for r in out[:10])
    return out


def aggregate() -> Aggregate:
    return Aggregate().add_all(synthetic_results())


def test_terminal_table() -> None:
    agg = aggregate()
    text = format_table(agg)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["ENDPOINT", "REQS", "MISMATCH"]
    # Worst first: the hostile endpoint (100%), users (29/200), search (1/72 compared).
    order = [line.split()[1] for line in lines[1:6]]
    assert order == [
        "/evil/<script>alert(1)</script>",
        "/users/{id}",
        "/search",
        "/orders/{id}",
        "/api/v2/items",
    ]
    users = next(line for line in lines if "/users/{id}" in line)
    assert users.split()[2:4] == ["200", "14.5%"]  # 29 of 200 differ, duplicates not counted
    orders = next(line for line in lines if line.startswith("GET /orders/{id}"))
    # After MISMATCH, a column per kind, then NOISE: noise only.
    assert orders.split()[3] == "-" and orders.split()[4 + len(KINDS)] == "150"
    assert "$.user.name ×29" in text
    assert summary_line(agg).startswith("533 results:")
    assert "10 duplicate deliveries ignored" in summary_line(agg)


def test_terminal_table_caps_rows_and_escapes_control_characters() -> None:
    agg = Aggregate()
    for n, r in enumerate(synthetic_results()[:3]):
        r = dict(r, endpoint=f"GET /x{n}\x1b[2J")
        agg.add(r)
    text = format_table(agg, max_rows=2)
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert "… 1 more endpoints" in text


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_escapes_recorded_data() -> None:
    page = render_html(aggregate(), title="report <b>", generated=dt.datetime(2024, 1, 1))
    parser = _Collector()
    parser.feed(page)
    # The only script-like content is escaped text, never a tag.
    assert "script" not in parser.tags and "img" not in parser.tags and "h1" in parser.tags
    assert parser.tags.count("h1") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "report &lt;b&gt;" in page
    # Nothing loads from anywhere.
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)
    assert "Content-Security-Policy" in page
    # The table, both charts, and examples of the differing endpoints only.
    assert parser.tags.count("svg") == 2
    assert page.count("<tr class='endpoint'>") == 5
    assert "class='endpoint-examples'" in page
    assert page.count("class='endpoint-examples'") == 3  # users, search, evil
    assert "$.user.name" in page and "$.timestamp" not in page.split("Example differences")[1]


def test_charts_handle_empty_and_constant_data() -> None:
    assert "no latency data" in latency_cdf_svg([], [])
    assert "<polyline" in latency_cdf_svg([5.0, 5.0], [5.0])
    linear = latency_cdf_svg([10.0, 20.0, 30.0], [15.0, 25.0])
    assert "log scale" not in linear
    logarithmic = latency_cdf_svg([0.5, 100.0], [1.0, 200.0])
    assert "log scale" in logarithmic
    assert "no compared results" in mismatch_chart_svg([])


def test_collect_filters_decodes_and_deduplicates() -> None:
    codec = Codec("replay_result")
    results = synthetic_results()
    values: list[bytes | None] = [codec.encode(r).value for r in results]
    values += [b"garbage", None]
    agg, bad = collect(iter(values))
    assert (len(agg), agg.duplicates, bad) == (533, 10, 1)
    since = dt.datetime.fromtimestamp((T0 + 100 * 1000) / 1e6, dt.timezone.utc)
    until = dt.datetime.fromtimestamp((T0 + 200 * 1000) / 1e6, dt.timezone.utc)
    window, _ = collect(iter(values), since=since, until=until)
    assert len(window) == 100
    none, _ = collect(iter(values), run_id="other")
    assert len(none) == 0


def produce(kafka: Kafka, topic: str, results: list[dict[str, Any]], extra: list[bytes]) -> None:
    from confluent_kafka import Producer

    codec = Codec("replay_result")
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    for r in results:
        encoded = codec.encode(r)
        producer.produce(
            f"{topic}.results", encoded.value, key=result_key(r), headers=encoded.headers
        )
    for value in extra:
        producer.produce(f"{topic}.results", value, key=b"x")
    assert producer.flush(30) == 0


def test_run_report_reads_the_results_topic(kafka: Kafka, tmp_path: Path) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(f"{topic}.results", 3)
    produce(kafka, topic, synthetic_results(), [b"not an event"])
    out = io.StringIO()
    html = tmp_path / "report.html"
    settings = KafkaSettings(kafka.bootstrap_servers)
    assert run_report(settings, topic, html, out=out) == 0
    text = out.getvalue()
    assert "533 results" in text and "10 duplicate deliveries ignored" in text
    assert "1 records in" in text and "could not be decoded" in text
    assert f"HTML report written to {html}" in text
    assert "GET /users/{id}" in html.read_text()
    assert run_report(settings, topic, None, out=io.StringIO(), fail_on_mismatch=True) == 1


def test_run_report_empty_and_missing_topics(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    settings = KafkaSettings(kafka.bootstrap_servers)
    with pytest.raises(TopicNotFound):
        run_report(settings, topic, out=io.StringIO())
    kafka.create_topic(f"{topic}.results", 1)
    out = io.StringIO()
    assert run_report(settings, topic, out=out, fail_on_mismatch=True) == 0
    assert "no results" in out.getvalue()
    since = dt.datetime(2024, 1, 2)
    with pytest.raises(ConfigError, match="--since must be before --until"):
        run_report(settings, topic, since=since, until=since, out=io.StringIO())


def test_issue_scenario_changed_field_noise_and_baseline() -> None:
    """The issue's acceptance scenario, in process: one endpoint changes a JSON
    field, one differs only in a timestamp and the Date header, one is identical.
    With a rule (or a baseline instead) only the first endpoint is flagged."""
    from replayer.comparing.noise import build_rules
    from replayer.comparing.responses import compare_exchange

    def response(body: dict[str, Any], date: str) -> ResponseView:
        return ResponseView.of(
            200,
            [("Content-Type", "application/json"), ("Date", date)],
            json.dumps(body).encode(),
        )

    def app(path: str, n: int, variant: str) -> ResponseView:
        if path.startswith("/users/"):
            name = f"user {n}" if variant != "shadow" else f"USER {n}"
            return response({"id": n, "name": name}, f"day {variant}")
        if path.startswith("/clock/"):
            return response({"id": n, "now": f"t-{variant}-{n}"}, f"day {variant}")
        return response({"static": True}, f"day {variant}")

    def run(rules: Any, with_baseline: bool) -> Aggregate:
        codec = Codec("replay_result")
        agg = Aggregate()
        n = 0
        for base in ("/users/", "/clock/", "/static/"):
            for k in range(10):
                n += 1
                path = f"{base}{k}"
                prod = app(path, k, "production")
                event = _event(n, "GET", path, 10.0)
                event["response"] = {
                    "status": prod.status,
                    "reason": b"OK",
                    "http_version": "HTTP/1.1",
                    "message": {
                        "headers": [x for pair in prod.headers for x in pair],
                        "body": prod.body,
                        "body_truncated": False,
                        "body_length": len(prod.body),
                        "trailers": None,
                    },
                }
                shadow = app(path, k, "shadow")
                baseline = app(path, k, "baseline") if with_baseline else None
                diffs = compare_exchange(event, shadow, rules, baseline)
                r = build_result(
                    event,
                    topic="t",
                    partition=0,
                    offset=n,
                    target="http://shadow",
                    sent_us=T0 + n,
                    shadow=shadow,
                    shadow_latency_s=0.01,
                    differences=diffs,
                )
                # Through the wire format, and delivered twice.
                agg.add(codec.decode(codec.encode(r).value))
                agg.add(codec.decode(codec.encode(r).value))
        return agg

    without_rule = {s.endpoint: s for s in run(build_rules(), False).endpoints()}
    assert without_rule["GET /clock/{id}"].mismatches == 10  # the timestamp, unexplained

    for agg in (run(build_rules(ignore_paths=["$.now"]), False), run(None, True)):
        stats = {s.endpoint: s for s in agg.endpoints()}
        users, clock, static = (stats[f"GET /{e}/{{id}}"] for e in ("users", "clock", "static"))
        assert (users.requests, users.mismatches) == (10, 10)
        assert users.top_paths() == [("body_json", "$.name", 10)]
        assert (clock.requests, clock.mismatches, clock.noise_only) == (10, 0, 10)
        assert (static.requests, static.mismatches, static.noise_only) == (10, 0, 0)
        assert agg.duplicates == 30
        table = format_table(agg)
        assert '\n  GET /users/{id}\n    JSON $.name ×10: "user ' in table
        assert "/clock/" not in table.split("Most frequent differences")[1]


def mirror_results(with_baseline: bool) -> list[dict[str, Any]]:
    """Results of replaying mirror captures (no production response): /items answers
    the same on shadow and baseline, /prices differs in one field for every third id.
    Without a baseline there is nothing to compare with."""
    from replayer.comparing.responses import compare_exchange

    def answer(doc: dict[str, Any], status: int = 200) -> ResponseView:
        return ResponseView.of(
            status, [("Content-Type", "application/json")], json.dumps(doc).encode()
        )

    out = []
    for i in range(30):
        path = f"/items/{i}" if i < 20 else f"/prices/{i}"
        event = _event(1000 + i, "GET", path, 0.0, mirror=True)
        price = i + 0.5 if path.startswith("/prices/") and i % 3 == 0 else i
        shadow = answer({"id": i, "price": price})
        baseline = answer({"id": i, "price": i}) if with_baseline else None
        out.append(
            build_result(
                event,
                topic="traffic",
                partition=0,
                offset=i,
                target="http://shadow:8080",
                sent_us=T0 + i,
                shadow=shadow,
                shadow_latency_s=0.002 + i / 10_000,
                differences=compare_exchange(event, shadow, None, baseline),
                baseline_target="http://baseline:8080" if with_baseline else None,
                baseline=baseline,
                baseline_latency_s=0.003 if with_baseline else None,
            )
        )
    return out


def test_mirror_captures_without_baseline_are_no_production_response_rows() -> None:
    agg = Aggregate().add_all(mirror_results(with_baseline=False))
    total = agg.total()
    assert (total.requests, total.unverified, total.compared, total.mismatches) == (30, 30, 0, 0)
    text = format_table(agg)
    header = text.splitlines()[0]
    assert "VS BASE" in header and "NO PROD RESP" in header
    items = next(line for line in text.splitlines() if line.startswith("GET /items/{id}"))
    cells = items.split()
    # 20 requests; no mismatch rate, kinds, noise, errors or vs baseline (nothing compared);
    # 20 with no production response; no production latency.
    last = 8 + len(KINDS)  # NO PROD RESP: after REQS, MISMATCH, the kinds and four more
    assert cells[2 : last + 1] == ["20", *["-"] * (last - 3), "20"]
    assert cells[last + 1] == "-/-/-"
    assert "Most frequent differences" not in text
    assert summary_line(agg) == (
        "30 results: 0 match (0 only in noise), 0 mismatch, 0 errors, 0 skipped, "
        "30 no production response (not compared); 0 duplicate deliveries ignored"
    )
    page = render_html(agg)
    assert "<span>no production response</span>" in page
    assert page.count("<td class='unverified'>") == 3  # two endpoints and the total
    assert "No endpoint differs." in page
    # A proxy-only report has neither column.
    assert "NO PROD RESP" not in format_table(aggregate())
    assert "no production response" not in render_html(aggregate())


def test_mirror_captures_vs_baseline_are_compared_with_the_baseline() -> None:
    agg = Aggregate().add_all(mirror_results(with_baseline=True))
    stats = {s.endpoint: s for s in agg.endpoints()}
    prices, items = stats["GET /prices/{id}"], stats["GET /items/{id}"]
    assert (prices.compared, prices.mismatches, prices.vs_baseline) == (10, 3, 10)
    assert (items.compared, items.mismatches, items.vs_baseline) == (20, 0, 20)
    assert agg.total().unverified == 0
    text = format_table(agg)
    assert text.splitlines()[1].startswith("GET /prices/{id}")  # the worst first
    assert "\n  GET /prices/{id}\n    JSON $.price ×3: " in text
    assert "30 of match and mismatch compared vs baseline" in summary_line(agg)
    page = render_html(agg)
    assert "<span>compared vs baseline</span>" in page
    example = page.split("Example differences")[1]
    # The reference column is the baseline's, not production's (there is none).
    assert "<th>baseline</th><th>shadow</th>" in example and "<th>production</th>" not in example
    assert "status baseline 200 → shadow 200" in example
    assert "10 compared vs baseline" in example


def test_fail_on_mismatch_ignores_rows_with_no_production_response(kafka: Kafka) -> None:
    settings = KafkaSettings(kafka.bootstrap_servers)
    unverified = kafka.new_topic(1)
    kafka.create_topic(f"{unverified}.results", 1)
    produce(kafka, unverified, mirror_results(with_baseline=False), [])
    out = io.StringIO()
    assert run_report(settings, unverified, out=out, fail_on_mismatch=True) == 0
    assert "30 no production response (not compared)" in out.getvalue()
    # Compared with the baseline, a difference is a mismatch like any other.
    compared = kafka.new_topic(1)
    kafka.create_topic(f"{compared}.results", 1)
    produce(kafka, compared, mirror_results(with_baseline=True), [])
    out = io.StringIO()
    assert run_report(settings, compared, out=out, fail_on_mismatch=True) == 1
    assert "3 mismatch" in out.getvalue()


def test_terminal_table_has_a_skipped_column_and_example_values() -> None:
    results = synthetic_results()
    skipped = [
        dict(r, id=f"skip-{n}", outcome="skipped", differences=[], mismatch_kinds=[])
        for n, r in enumerate(x for x in results if x["endpoint"] == "POST /api/v2/items")
    ][:7]
    agg = Aggregate().add_all([*results, *skipped])
    lines = format_table(agg).splitlines()
    header = lines[0].split()
    column = header.index("SKIP") + 1  # the endpoint takes two words
    items = next(line.split() for line in lines if line.startswith("POST /api/v2/items"))
    assert items[column] == "7"
    assert next(ln.split() for ln in lines if ln.startswith("all endpoints"))[column] == "7"
    text = "\n".join(lines)
    # The value of a kept example at the top path, production → shadow, escaped.
    assert re.search(r'^    JSON \$\.user\.name ×29: "user (\d+)" → "User \1"$', text, re.M)
    assert "    status ×8: 200 → 500" in text
    assert "\x1b" not in text


def test_colour_is_added_after_the_layout_and_only_when_wanted() -> None:
    agg = aggregate()
    plain, coloured = format_table(agg), format_table(agg, color=True)
    assert "\x1b[31m" in coloured and "\x1b[1m" in coloured
    assert re.sub(r"\x1b\[\d+m", "", coloured) == plain

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_color("auto", Terminal(), {}) is True
    assert use_color("auto", Terminal(), {"NO_COLOR": "1"}) is False
    assert use_color("auto", Terminal(), {"NO_COLOR": ""}) is True  # set but empty: no effect
    assert use_color("auto", Terminal(), {"TERM": "dumb"}) is False
    assert use_color("auto", io.StringIO(), {}) is False
    assert use_color("always", io.StringIO(), {"NO_COLOR": "1"}) is True
    assert use_color("never", Terminal(), {}) is False


def test_html_carries_the_several_runs_note() -> None:
    agg = Aggregate().add_all(
        [dict(r, run_id="a") for r in synthetic_results()[:5]]
        + [dict(r, run_id="b") for r in synthetic_results()[5:9]]
    )
    note = runs_note(agg)
    assert note == "results of several runs are combined: a (5), b (4); pick one with --run"
    assert f"<p class='note'>note: {note}</p>" in render_html(agg, note=note)
    assert "class='note'" not in render_html(agg)
    assert runs_note(aggregate()) is None
