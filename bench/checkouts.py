"""Two checkouts' benchmarks side by side in one run: is B within noise of A?

Runs each checkout's own bench/replay.py and bench/recorder.py, with its own
`.venv` and from inside it (so each measures its own code), taking turns: in
every round each benchmark runs once per side, the side going first swapping
from round to round (AB BA AB ...) so a drift of the machine hits both alike.
One table then gives, per figure, each side's median and range over the rounds
and the ratio B/A of the two runs of each round. --benches picks from:
`instructions` (recorder.py --instructions, callgrind: steady under load),
`replay` and `recorder` (wall clock and CPU time: they move with the load).
"Within noise" means the ratios' range takes in 1.00 or the medians differ by
less than A's own spread. Every run's output is kept in --logs.

    python bench/checkouts.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 3] [--benches replay]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from figures import BENCHES, CPU, INSTRUCTIONS, WALL, Bench, Figure

#: Arguments given to each benchmark unless --NAME-args says otherwise: smaller
#: than the benches' own defaults, because the rounds repeat them anyway.
DEFAULT_ARGS = {
    "instructions": "--requests 150 --warmup-requests 100",
    "replay": "--records 20000 --duration 3 --paced-seconds 3",
    "recorder": "--duration 3 --warmup 1",
}
#: What each side's venv has of what the benchmarks measure through.
_PACKAGES = ("mitmproxy", "confluent-kafka", "fastavro", "uvloop", "aiohttp", "click")


@dataclass
class Side:
    """One checkout: where it is, its Python, and every run's figures per benchmark."""

    label: str
    root: Path
    runs: dict[str, list[dict[str, float] | None]] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(self.root), *args], capture_output=True, text=True, check=False
        )
        return out.stdout.strip()

    def describe(self) -> str:
        commit = self.git("log", "-1", "--format=%h %cI %s")
        dirty = " (with uncommitted changes)" if self.git("status", "--porcelain") else ""
        return f"{self.label} = {self.root}: {commit}{dirty}"

    def versions(self) -> str:
        code = (
            "import sys, importlib.metadata as m\n"
            "def v(n):\n"
            "    try: return m.version(n)\n"
            "    except m.PackageNotFoundError: return '-'\n"
            f"print('Python ' + sys.version.split()[0] + ', ' + ', '.join("
            f"n + ' ' + v(n) for n in {_PACKAGES!r}))"
        )
        out = subprocess.run(
            [str(self.python), "-c", code], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or out.stderr.strip()


def run_one(side: Side, bench: Bench, extra: list[str], log: Path, timeout: float) -> str | None:
    """Run one benchmark of one side; its output (also written to `log`), None if it failed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{side.python.parent}{os.pathsep}{env.get('PATH', '')}"
    argv = [str(side.python), str(side.root / "bench" / bench.script), *bench.args, *extra]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            cwd=side.root,  # `python -m trafficmirror` must find this side's code first
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        # Always bytes, whatever `text` says (the subprocess documentation).
        partial = b"".join(x for x in (exc.stdout, exc.stderr) if isinstance(x, bytes))
        text, code = f"{partial.decode(errors='replace')}\nTIMEOUT after {timeout:g}s", -1
    log.write_text(f"$ {shlex.join(argv)}  (in {side.root})\n{text}\nexit code {code}\n")
    elapsed = time.monotonic() - started
    print(f"    {side.label} {bench.name:12} {elapsed:5.0f}s  exit {code}  -> {log}", flush=True)
    return text if code == 0 else None


def spread(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    mid = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return mid
    return f"{mid} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def _digits(values: list[float]) -> int:
    top = max((abs(v) for v in values), default=0.0)
    return 0 if top >= 100 else 1 if top >= 10 else 2 if top >= 1 else 3


def verdict(figure: Figure, a: list[float], ratios: list[float], b_label: str) -> str:
    """'within noise', or whether B is better, from the paired ratios and A's own spread."""
    if len(ratios) < 2 or len(a) < 2:
        return "-"  # one round says nothing about the noise
    med = statistics.median(ratios)
    own = (max(a) - min(a)) / statistics.median(a) if statistics.median(a) else 0.0
    if min(ratios) <= 1 <= max(ratios) or abs(med - 1) <= own:
        return "within noise"
    if not figure.better:
        return f"{b_label} {med - 1:+.1%}"
    better = (med > 1) == (figure.better == "higher")
    return f"{b_label} {'better' if better else 'worse'} ({med - 1:+.1%})"


def table(bench: Bench, a: Side, b: Side) -> list[str]:
    """The rows of one benchmark: each figure of A and B and the ratios of their pairs."""
    pairs = list(zip(a.runs[bench.name], b.runs[bench.name], strict=True))
    seen: dict[str, None] = {}
    for run in [*a.runs[bench.name], *b.runs[bench.name]]:
        for key in run or {}:
            seen.setdefault(key.split(".", 1)[0], None)
    lines = []
    for figure in bench.catalogue(list(seen)):
        va = [r[figure.key] for r in a.runs[bench.name] if r and figure.key in r]
        vb = [r[figure.key] for r in b.runs[bench.name] if r and figure.key in r]
        if not va and not vb:
            continue
        ratios = sorted(
            y[figure.key] / x[figure.key]
            for x, y in pairs
            if x and y and figure.key in x and figure.key in y and x[figure.key]
        )
        digits = _digits(va + vb)
        better = {"higher": "↑", "lower": "↓"}.get(figure.better, "")
        lines.append(
            f"| {bench.name} | {figure.label} ({figure.unit}) {better} | {figure.kind} "
            f"| {spread(va, digits)} | {spread(vb, digits)} | {spread(ratios, 3)} "
            f"| {verdict(figure, va, ratios, b.label)} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("a", type=Path, help="checkout A (the baseline), with its .venv")
    parser.add_argument("b", type=Path, help="checkout B (the one compared), with its .venv")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each benchmark per side")
    parser.add_argument(
        "--benches",
        default="instructions,replay,recorder",
        help=f"comma-separated, of: {', '.join(BENCHES)}",
    )
    for name, default in DEFAULT_ARGS.items():
        parser.add_argument(
            f"--{name}-args",
            default=default,
            help=f"arguments for the {name} runs (default: {default!r})",
        )
    parser.add_argument(
        "--labels", default="old,new", help="names of A and B in the output (default: old,new)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run at most")
    parser.add_argument("--logs", type=Path, help="folder for every run's output (default: temp)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    names = [n.strip() for n in args.benches.split(",") if n.strip()]
    for name in names:
        if name not in BENCHES:
            parser.error(f"unknown benchmark {name!r}")
    labels = [x.strip() for x in args.labels.split(",")]
    if len(labels) != 2 or not all(labels):
        parser.error("--labels takes two names, such as old,new")
    sides = [Side(labels[0], args.a.resolve()), Side(labels[1], args.b.resolve())]
    for side in sides:
        if not side.python.exists():
            parser.error(f"{side.python} does not exist (make the checkout's venv first)")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="tm-bench-checkouts-"))
    logs.mkdir(parents=True, exist_ok=True)

    command = shlex.join(["python", *sys.argv])
    started = datetime.datetime.now().astimezone()
    print(f"command: {command}")
    print(f"started {started:%Y-%m-%d %H:%M %Z}; logs in {logs}")
    for side in sides:
        print(f"  {side.describe()}")
        print(f"    {side.versions()}")
    load_start = os.getloadavg()
    print(
        f"cpus: {os.cpu_count()}; load average {' '.join(f'{x:.2f}' for x in load_start)}",
        flush=True,
    )

    for rnd in range(args.rounds):
        order = sides if rnd % 2 == 0 else sides[::-1]
        print(f"round {rnd + 1} of {args.rounds}: {' then '.join(s.label for s in order)}")
        for name in names:
            bench = BENCHES[name]
            extra = shlex.split(getattr(args, f"{name}_args"))
            for side in order:
                log = logs / f"round{rnd + 1}-{name}-{side.label}.txt"
                text = run_one(side, bench, extra, log, args.timeout)
                side.runs.setdefault(name, []).append(bench.read(text) if text else None)

    finished = datetime.datetime.now().astimezone()
    load_end = os.getloadavg()
    a, b = sides
    print()
    print(
        f"{a.label} = {a.root} {a.git('log', '-1', '--format=%h')}, "
        f"{b.label} = {b.root} {b.git('log', '-1', '--format=%h')}; {args.rounds} rounds, "
        f"{started:%Y-%m-%d %H:%M}..{finished:%H:%M %Z}; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end"
    )
    print()
    print(
        f"| bench | figure | kind | {a.label}: median (min..max) | {b.label}: median (min..max) "
        f"| {b.label}/{a.label}, paired | verdict |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for name in names:
        for line in table(BENCHES[name], a, b):
            print(line)
    failed = sum(r is None for s in sides for runs in s.runs.values() for r in runs)
    print()
    print(
        f"↑ higher is better, ↓ lower is better. Kinds: {INSTRUCTIONS} (callgrind) hold still "
        f"on a loaded machine; {CPU} less so; {WALL} figures move with whatever else runs "
        f"(load average here: {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end, "
        f"on {os.cpu_count()} cores)."
    )
    if failed:
        print(f"WARNING: {failed} run(s) failed; their output is in {logs}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "started": started.isoformat(),
                    "finished": finished.isoformat(),
                    "sides": {s.label: {"root": str(s.root), "runs": s.runs} for s in sides},
                },
                indent=1,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
