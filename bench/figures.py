"""The figures bench/replay.py and bench/recorder.py print, read back from their text.

bench/checkouts.py runs the benchmarks of two checkouts, one of which may be
older than any machine-readable output, so it reads what every version prints:
the per-run lines ("  run 1 max1  5694.6 req/s  298 us CPU/req ...") and the
few table rows that have no per-run line. One reader for both sides keeps the
comparison like for like. Each figure says what kind of measurement it is,
because on a loaded machine only instruction counts hold still.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass

#: Kinds of figure, from the steadiest to the noisiest on a shared machine.
INSTRUCTIONS = "instructions"
CPU = "CPU time"
WALL = "wall clock"


@dataclass(frozen=True)
class Figure:
    """What one figure is: its label in the table, its unit, which way is better."""

    key: str
    label: str
    unit: str
    kind: str
    better: str  # "higher", "lower", or "" (a target to hit, such as an achieved rate)


def _replay_catalogue() -> list[Figure]:
    rows = [Figure("ceiling", "wrk against the shadow (the ceiling)", "req/s", WALL, "higher")]
    for name, label in (
        ("max1", "replay range --speed max, 1 process"),
        ("nores", "the same with --no-results"),
        ("floor", "floor: consume, decode, build, send"),
        ("max2", "replay range --speed max, 2 processes"),
    ):
        rows.append(Figure(f"{name}.rps", label, "req/s", WALL, "higher"))
        rows.append(Figure(f"{name}.cpu", f"{label}: CPU per request", "µs", CPU, "lower"))
    for rate in (100, 1000):
        rows.append(Figure(f"rate{rate}.rps", f"--rate {rate}: achieved", "req/s", WALL, ""))
    for who, label in (("own", "the replayer's own"), ("shadow", "at the shadow")):
        for q in ("p50", "p99"):
            rows.append(
                Figure(f"speed1.{who}.{q}", f"--speed 1 lateness {q}, {label}", "ms", WALL, "lower")
            )
    return rows


def _instruction_catalogue(names: list[str]) -> list[Figure]:
    rows = []
    for name in names:
        for part, label in (
            ("loop", "event loop"),
            ("others", "other threads"),
            ("total", "total"),
        ):
            rows.append(
                Figure(
                    f"{name}.{part}",
                    f"{name}: instructions/req, {label}",
                    "M",
                    INSTRUCTIONS,
                    "lower",
                )
            )
    return rows


def _recorder_catalogue(names: list[str]) -> list[Figure]:
    rows = []
    for name in names:
        rows.append(Figure(f"{name}.rps", f"{name}: one at a time", "req/s", WALL, "higher"))
        rows.append(Figure(f"{name}.cpu", f"{name}: proxy CPU per request", "µs", CPU, "lower"))
        if name != "plain":
            rows.append(
                Figure(
                    f"{name}.vs_plain",
                    f"{name}: req/s vs plain, one at a time",
                    "x",
                    WALL,
                    "higher",
                )
            )
    for name in names:
        rows.append(
            Figure(
                f"{name}.together_cpu",
                f"{name}: side by side, proxy CPU per request",
                "µs",
                CPU,
                "lower",
            )
        )
        if name != "plain":
            rows.append(
                Figure(
                    f"{name}.capacity",
                    f"{name}: capacity vs plain, side by side",
                    "x",
                    CPU,
                    "higher",
                )
            )
    return rows


_NUM = r"([-+]?[\d.]+)"


def _median_into(out: dict[str, float], samples: dict[str, list[float]]) -> dict[str, float]:
    for key, values in samples.items():
        if values:
            out[key] = statistics.median(values)
    return out


def replay_figures(text: str) -> dict[str, float]:
    """The figures of one bench/replay.py run (medians when it repeated inside)."""
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    for m in re.finditer(rf"^\s*run \d+ wrk\s+{_NUM} req/s", text, re.M):
        add("ceiling", float(m[1]))
    for m in re.finditer(rf"^\s*run \d+ (\S+)\s+{_NUM} req/s\s+{_NUM} us CPU/req(.*)$", text, re.M):
        name, rps, cpu, rest = m[1], float(m[2]), float(m[3]), m[4]
        add(f"{name}.rps", rps)
        if not name.startswith(("rate", "speed")):
            add(f"{name}.cpu", cpu)
        late = re.search(rf"at the shadow p50 {_NUM} ms p99 {_NUM} ms", rest)
        if late:
            add("speed1.shadow.p50", float(late[1]))
            add("speed1.shadow.p99", float(late[2]))
    # The replayer's own lateness is only in the table: "| ... (sent - due) | A / B ms |",
    # each side either one value or "median (min..max)".
    own = re.search(rf"the replayer's own \(sent - due\) \| {_NUM}[^/|]*/ {_NUM}", text)
    out: dict[str, float] = {}
    if own:
        out["speed1.own.p50"], out["speed1.own.p99"] = float(own[1]), float(own[2])
    return _median_into(out, samples)


def instruction_figures(text: str) -> dict[str, float]:
    """The figures of one bench/recorder.py --instructions run (millions per request)."""
    out = {}
    pattern = rf"^\s*(\S+)\s+event loop\s+{_NUM} M\s+other threads\s+{_NUM} M"
    for m in re.finditer(pattern, text, re.M):
        loop, others = float(m[2]), float(m[3])
        out[f"{m[1]}.loop"], out[f"{m[1]}.others"] = loop, others
        out[f"{m[1]}.total"] = loop + others
    return out


def recorder_figures(text: str) -> dict[str, float]:
    """The figures of one timed bench/recorder.py run (medians when it repeated inside)."""
    samples: dict[str, list[float]] = {}
    runs: dict[int, dict[str, float]] = {}
    pattern = rf"^\s*run (\d+) (\S+)\s+{_NUM} req/s .*proxy cpu\s+{_NUM} us/req"
    for m in re.finditer(pattern, text, re.M):
        name, rps = m[2], float(m[3])
        runs.setdefault(int(m[1]), {})[name] = rps
        samples.setdefault(f"{name}.rps", []).append(rps)
        samples.setdefault(f"{name}.cpu", []).append(float(m[4]))
    # As the bench does: each repeat against the plain run of the same repeat.
    for by_name in runs.values():
        for name, rps in by_name.items():
            if name != "plain" and by_name.get("plain"):
                samples.setdefault(f"{name}.vs_plain", []).append(rps / by_name["plain"])
    for m in re.finditer(r"^\s*together \d+: (.*)$", text, re.M):
        cpu = {
            part[1]: float(part[3])
            for part in re.finditer(rf"(\S+)\s+{_NUM} req/s\s+{_NUM} us/req", m[1])
        }
        for name, value in cpu.items():
            samples.setdefault(f"{name}.together_cpu", []).append(value)
            if name != "plain" and cpu.get("plain") and value:
                samples.setdefault(f"{name}.capacity", []).append(cpu["plain"] / value)
    return _median_into({}, samples)


@dataclass(frozen=True)
class Bench:
    """One benchmark as the harness runs it: its script, fixed arguments, reader, rows."""

    name: str
    script: str
    args: tuple[str, ...]
    read: Callable[[str], dict[str, float]]
    catalogue: Callable[[list[str]], list[Figure]]


BENCHES = {
    "replay": Bench(
        "replay", "replay.py", ("--repeats", "1"), replay_figures, lambda _: _replay_catalogue()
    ),
    "instructions": Bench(
        "instructions",
        "recorder.py",
        ("--instructions",),
        instruction_figures,
        _instruction_catalogue,
    ),
    "recorder": Bench(
        "recorder", "recorder.py", ("--repeats", "1"), recorder_figures, _recorder_catalogue
    ),
}
