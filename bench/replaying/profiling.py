"""`bench/replay.py --profile`: where one `--speed max` replay's time goes.

One more replay runs under py-spy; each sample is put in the stage of a
record's path its innermost matching frame belongs to. The matchers name the
replayer's functions and files: when those move, update `_STAGES`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procs import affinity

from replaying.shadow import fetch_arrivals

#: Where a sample of the replayer's profile goes: the innermost frame matching one of these.
_STAGES = (
    ("decode", ("Codec.decode",)),
    ("build the request", ("build_request",)),
    ("compare", ("compare_exchange", "build_result", "_response (replayer/results/stage")),
    ("results: encode, produce", ("result_message", "ResultSink.send")),
    ("results: producer's poll thread", ("ResultSink._poll_loop",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    (
        "HTTP: sender, transport, socket I/O",
        ("Sender.", "http1.py", "http2.py", "h2conn.py", "jh2/", "selector_events.py"),
    ),
    ("schedule and merge (time warp)", ("clock.py", "merge.py", "ratelimit.py")),
    ("consume (Kafka thread, records)", ("concurrent/futures/thread.py", "Record.from_message")),
    ("start-up (imports, connect)", ("importlib", "cli/comparison.py")),
)


def stages(raw: Path) -> list[tuple[str, float]]:
    """Share of py-spy samples (raw format) per stage of the record's path."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        n = int(number)
        total += n
        stage = "other (start-up, exit)"
        for frame in reversed(stack.split(";")):
            # uvloop's loop is C: its own time shows as the innermost Python frame Runner.run.
            if "run_forever" in frame or "Runner.run (" in frame:
                stage = "event loop and pipeline glue"
                break
            found = next((name for name, subs in _STAGES if any(s in frame for s in subs)), None)
            if found:
                stage = found
                break
        counts[stage] = counts.get(stage, 0) + n
    return sorted(((k, v / total) for k, v in counts.items()), key=lambda kv: -kv[1])


def profile(
    argv: list[str],
    shadow_port: int,
    cpus: set[int] | None,
    logdir: Path,
    what: str = "one --speed max replay",
) -> None:
    """One `--speed max` replay under py-spy; prints where its time goes."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("py-spy is not installed next to this Python: no profile", flush=True)
        return
    raw = logdir / f"profile-{abs(hash(what))}.txt"
    fetch_arrivals(shadow_port)
    with open(logdir / "profile.log", "ab") as log:
        subprocess.run(
            [str(spy), "record", "-r", "250", "-f", "raw", "-o", str(raw), "--", *argv],
            stdout=log,
            stderr=log,
            check=False,
            preexec_fn=affinity(cpus),  # noqa: PLW1509
        )
    fetch_arrivals(shadow_port)
    if not raw.exists():
        print("py-spy wrote no profile (see profile.log)", flush=True)
        return
    print()
    print(f"| where {what}'s time goes (py-spy samples) | share |")
    print("| --- | ---: |")
    for stage, share in stages(raw):
        print(f"| {stage} | {share * 100:.0f} % |")
