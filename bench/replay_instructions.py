"""Instructions per replayed record, under callgrind, for one or more checkouts.

Wall-clock and CPU-time figures of `bench/replay.py` move with whatever else
runs on the machine; instruction counts do not. This fills two topics on one
in-memory broker with the same synthetic exchanges as bench/replay.py (a small
and a large one), starts its fast shadow, and runs each checkout's own `replay
range --speed max` over both topics under `valgrind --tool=callgrind` (every
thread counted), from inside that checkout with its own `.venv`. The
difference between the two runs, divided by the difference in records, is the
cost of one record without the start-up. Checkouts take turns, round by round.

With --transforms, the topics hold the transforms row's authenticated traffic
(replaying/transforms.py) instead, and each checkout replays them twice: as
they are, and with the row's transforms file (five rewrite rules, one
correlation rule, JWT re-sign); the table gives both and their ratio, the
instruction-count counterpart of the row's throughput ratio.

    python bench/replay_instructions.py CHECKOUT [CHECKOUT ...] [--small 400] [--large 2400]
        [--transforms]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from procs import free_port, start, start_broker, stop, wait_port
from replaying.traffic import fill
from replaying.transforms import fill_auth, write_transforms

HERE = Path(__file__).resolve().parent


def instructions(
    checkout: Path, bootstrap: str, topic: str, target: str, out: Path, extra: list[str]
) -> int:
    """Total instructions (all threads) of one `replay range` of `topic` run in `checkout`."""
    python = checkout / ".venv" / "bin" / "python"
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        str(python),
        "-m",
        "trafficmirror",
        "-q",
        "replay",
        "range",
        "-b",
        bootstrap,
        "-t",
        topic,
        "--start-offset",
        "0",
        "--end-offset",
        "end",
        "--target",
        target,
        "--methods",
        "ALL",
        "--speed",
        "max",
        *extra,
    ]
    done = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(
            f"{checkout}: replay range exited {done.returncode}: {done.stderr[-800:]}"
        )
    match = re.search(r"^summary: (\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no summary line in {out}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="checkouts, each with .venv")
    parser.add_argument("--small", type=int, default=400, help="records of the small topic")
    parser.add_argument("--large", type=int, default=2400, help="records of the large topic")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each checkout")
    parser.add_argument(
        "--transforms",
        action="store_true",
        help="the transforms row's traffic, replayed without and with its transforms file",
    )
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    checkouts = [c.resolve() for c in args.checkouts]
    for checkout in checkouts:
        if not (checkout / ".venv" / "bin" / "python").exists():
            parser.error(f"{checkout} has no .venv/bin/python")
    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-instr-"))
    broker, bootstrap = start_broker(["ins-small:4", "ins-large:4"], None, logdir / "broker.log")
    procs = [broker]
    try:
        port = free_port()
        shadow = [sys.executable, str(HERE / "replay.py"), "--_shadow", str(port)]
        procs.append(start(shadow, None, logdir / "shadow.log"))
        wait_port(port)
        target = f"http://127.0.0.1:{port}"
        filler = fill_auth if args.transforms else fill
        filler(bootstrap, "ins-small", args.small, 100, "s")
        filler(bootstrap, "ins-large", args.large, 100, "l")
        variants: dict[str, list[str]] = {"": []}
        if args.transforms:
            variants = {
                " plain": [],
                " transforms": ["--transforms", str(write_transforms(logdir))],
            }
        per_record: dict[tuple[Path, str], list[float]] = {
            (c, v): [] for c in checkouts for v in variants
        }
        for round_ in range(args.rounds):
            order = checkouts if round_ % 2 == 0 else list(reversed(checkouts))
            for checkout in order:
                for variant, extra in variants.items():
                    tag = f"{round_}-{checkout.name}{variant.replace(' ', '-')}"
                    small, large = (
                        instructions(
                            checkout, bootstrap, f"ins-{size}", target,
                            logdir / f"{tag}-{size}.out", extra,
                        )
                        for size in ("small", "large")
                    )  # fmt: skip
                    value = (large - small) / (args.large - args.small)
                    per_record[(checkout, variant)].append(value)
                    print(
                        f"round {round_ + 1}: {checkout}{variant}: "
                        f"{value:,.0f} instructions per record",
                        flush=True,
                    )
        print(f"\n{args.large - args.small} records between the two runs; logs in {logdir}\n")
        print("| checkout | commit | instructions per record: median (min..max) |")
        print("| --- | --- | ---: |")
        for (checkout, variant), values in per_record.items():
            commit = subprocess.run(
                ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            print(
                f"| {checkout}{variant} | {commit} | {statistics.median(values):,.0f} "
                f"({min(values):,.0f}..{max(values):,.0f}) |"
            )
        if args.transforms:
            for checkout in checkouts:
                plain = statistics.median(per_record[(checkout, " plain")])
                transformed = statistics.median(per_record[(checkout, " transforms")])
                print(
                    f"{checkout}: without / with transforms = {plain / transformed:.2f}x "
                    f"(+{transformed - plain:,.0f} instructions per record)"
                )
    finally:
        for proc in reversed(procs):
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
