"""bench/live_path.py's parts: the load generator's schedule and reading, the figures, the verdicts,
and the generated nginx configurations run for real (app, reverse proxy, mirroring proxy).

The benchmark prints figures nobody checks by hand, so what decides them is
tested here: that requests are spread evenly (never a burst of all connections),
that latency is counted from the due time, percentiles, and which targets a
table says are met. Timing itself is not asserted.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from livepath import loadgen  # noqa: E402
from livepath.nginx import NGINX, app_config, proxy_config, start_nginx  # noqa: E402
from livepath.report import Cell, Download, percentile, steady_table, verdicts  # noqa: E402
from livepath.runs import parse_load  # noqa: E402
from livepath.targets import check_row  # noqa: E402
from procs import free_port, stop  # noqa: E402

HAVE_NGINX = shutil.which(NGINX) is not None or Path(NGINX).exists()


def test_connections_are_spread_evenly_never_a_burst() -> None:
    interval = 20_000_000  # 50 req/s
    due = sorted(
        loadgen.due_ns(0, c, 8, k, interval) for c in range(8) for k in range(50)
    )  # one second of 8 × 50 req/s
    gaps = {b - a for a, b in zip(due, due[1:], strict=False)}
    assert gaps == {2_500_000}  # 400 req/s, one every 2.5 ms
    # each connection keeps its own steady 50 req/s
    own = [loadgen.due_ns(0, 3, 8, k, interval) for k in range(5)]
    assert {b - a for a, b in zip(own, own[1:], strict=False)} == {interval}


def test_content_length_is_read_from_the_head_or_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-LENGTH:  42\r\n"
    assert loadgen.content_length(head) == 42
    with pytest.raises(ValueError, match="without Content-Length"):
        loadgen.content_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))


def test_loads_are_parsed_or_refused_in_one_line() -> None:
    load = parse_load("8x50")
    assert (load.connections, load.rate, load.key) == (8, 50.0, "8x50")
    for bad in ("8", "x50", "0x50", "8x0", "eightx50"):
        with pytest.raises(ValueError, match="CONNECTIONSxRATE"):
            parse_load(bad)


def test_rows_and_variants_are_checked() -> None:
    assert check_row("record") is None
    assert check_row("record:defer+gc") is None
    assert "unknown variant(s) fast" in (check_row("record:fast") or "")
    assert "unknown row envoy" in (check_row("envoy") or "")


def _cell(latencies_ms: list[float]) -> Cell:
    cell = Cell()
    run = {"latencies_us": [x * 1000 for x in latencies_ms], "late_us": [5.0]}
    cpu = len(latencies_ms) * 0.0005
    cell.add({**run, "errors": 0, "reconnects": 0}, {"main": cpu * 0.8, "librdkafka": cpu * 0.2})
    return cell


def test_added_latency_is_over_the_baseline_and_targets_are_judged() -> None:
    direct = _cell([0.2] * 100)
    record = _cell([0.9] * 98 + [2.5, 2.5])  # +0.7 p50, +2.3 p99
    nginx = _cell([0.3] * 100)
    mirror = _cell([0.5] * 100)  # +0.2 over nginx
    cells = {
        ("direct", "8x50"): direct,
        ("record", "8x50"): _cell([5.2] * 100),  # +5.0
        ("record-w2", "8x50"): _cell([2.6] * 100),  # +2.4, under half of 5.0
        ("direct", "1x50"): direct,
        ("record", "1x50"): record,
        ("nginx", "1x50"): nginx,
        ("mirror", "1x50"): mirror,
    }
    rows = steady_table(
        "1 × 50 req/s",
        [("direct", "direct", direct), ("record", "record", record)],
        direct,
        {"record": 80.0},
    )
    assert rows[-1].startswith("| record | 0.90 | 0.90 | 2.50 | +0.70 | +2.30 |")
    assert "| 500 | 80 |" in rows[-1]  # CPU µs per request, peak RSS
    downloads = {
        "direct": [Download(1, [0.001, 0.009, 0.002], [0.2], True, 0, 0)],
        "record": [Download(1, [0.005, 0.004, 0.090], [0.5], True, 80, 100)],  # medians
    }
    text = "\n".join(verdicts(cells, downloads))
    assert "added p50 at 1×50 ≤ 1 ms: 0.70 ms, **met**" in text
    assert "added p99 at 1×50 ≤ 2 ms: 2.30 ms, **NOT met**" in text
    assert "over nginx alone at 1x50 ≤ 0.3 ms: 0.20 ms, **met**" in text
    assert "over nginx alone at 8x50 ≤ 0.3 ms: not measured" in text
    assert (
        "`record --workers 2` added p50 at 8×50 (half of `record`'s) ≤ 2.5 ms: 2.40 ms, **met**"
        in text
    )
    assert "RSS above idle, 1 × 200 MB ≤ 64 MB: 20.00 MB, **met**" in text
    assert "first byte over direct, 1 × 200 MB ≤ 5 ms: 3.00 ms, **met**" in text


@pytest.mark.skipif(not HAVE_NGINX, reason="nginx is not installed")
def test_generated_nginx_configs_serve_proxy_and_mirror(tmp_path: Path) -> None:
    """The app, nginx in front of it and nginx mirroring to a dead port: the load generator
    gets every answer, and the download arrives whole."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(3_000_000)
    started = []
    try:
        app_port, proxy_port, mirror_port = free_port(), free_port(), free_port()
        for name, config, port in (
            ("app", app_config(tmp_path / "app", app_port, big), app_port),
            ("proxy", proxy_config(tmp_path / "proxy", proxy_port, app_port), proxy_port),
            (
                "mirror",
                proxy_config(tmp_path / "mirror", mirror_port, app_port, mirror_port=free_port()),
                mirror_port,
            ),
        ):
            (tmp_path / name).mkdir()
            started.append(start_nginx(tmp_path / name, config, port))
        for port in (app_port, proxy_port, mirror_port):
            out = loadgen.steady(port, 2, 40.0, 0.3, 0.1)
            assert out["errors"] == 0 and out["reconnects"] == 0
            assert 20 <= len(out["latencies_us"]) <= 26  # 2 × 40 req/s × 0.3 s
            assert len(out["late_us"]) <= len(out["latencies_us"])
            assert all(x > 0 for x in out["latencies_us"])
            got = loadgen.download(port, 2, "/big")["downloads"]
            assert [d["ok"] for d in got] == [True, True]
            assert [d["bytes"] for d in got] == [3_000_000, 3_000_000]
    finally:
        for proc in started:
            stop(proc)


def test_the_load_generator_refuses_bad_arguments() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "livepath" / "loadgen.py"), "steady", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and out.stderr.startswith("usage: loadgen.py")
