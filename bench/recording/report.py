"""The table of the runs one at a time, with each proxy's ratios against plain mitmdump."""

from __future__ import annotations

import statistics

from recording.load import Result
from recording.proxies import Config


def paired(config: Config, base: Config | None, attr: str) -> float | None:
    """Median over the repeats of config / plain, each against the plain run just before it.

    Runs are interleaved, so each pair ran minutes apart at most: on a shared
    machine whose speed drifts, the ratio of neighbours is steadier than the
    ratio of two medians.
    """
    if base is None or not base.results:
        return None
    ratios = [
        getattr(r, attr) / getattr(b, attr)
        for r, b in zip(config.results, base.results, strict=True)
        if getattr(b, attr)
    ]
    return statistics.median(ratios) if ratios else None


def report(configs: list[Config], direct: Result) -> None:
    plain = next((c for c in configs if c.name == "plain"), None)
    print()
    print(
        "| configuration | req/s (median) | p50 ms | p99 ms | vs plain mitmdump "
        "| proxy CPU µs/req | CPU vs plain | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ratios: dict[str, float] = {}
    for config in configs:
        m = config.median()
        rps_ratio = paired(config, plain, "rps")
        cpu_ratio = paired(config, plain, "cpu_us")
        if rps_ratio is not None:
            ratios[config.name] = rps_ratio
        print(
            f"| {config.describe} | {m.rps:.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
            f"| {ratio(rps_ratio)} | {m.cpu_us:.0f} | {ratio(cpu_ratio)} | {m.errors} |"
        )
    print(
        f"| (app alone, no proxy) | {direct.rps:.0f} | {direct.p50_ms:.2f} | "
        f"{direct.p99_ms:.2f} | | | | {direct.errors} |"
    )
    if "addon" in ratios:
        verdict = "met" if ratios["addon"] >= 0.95 else "NOT met"
        print(f"target addon >= 0.95x plain, one at a time: {ratios['addon']:.2f}x, {verdict}")
    if "record" in ratios:
        verdict = "met" if ratios["record"] >= 1.8 else "NOT met"
        print(f"target record >= 1.8x plain, one at a time: {ratios['record']:.2f}x, {verdict}")
    slowest_ok = max(c.median().rps for c in configs)
    if slowest_ok > direct.rps / 2:
        print(
            "WARNING: a proxy reached more than half of the app's own rate; the app/load "
            "core may be limiting the result"
        )


def ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"
