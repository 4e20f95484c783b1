"""`bench/live_path.py --py-spy DIR`: where a Python row's time goes, sampled while it is measured.

During each measured window of a Python row (mitmdump, record and its
variants) py-spy samples the process (`--gil`: only the thread holding the
GIL, so the samples are Python's running time, not its waiting) and writes
raw stacks to DIR. `breakdown` sorts the samples of one row and load into
the parts the docs name: the recorder's work per exchange (building the
event, encoding it, handing it to the producer, the rest of the hook), the
producer's poll thread, the event loop's own machinery, and mitmproxy (all
else on the event loop). The garbage collector has no frame of its own: its
pauses show up inside whatever allocated (bench/livepath/variant.py `timing`
times them instead).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: The parts, in table order: (name, frames whose presence puts a sample there), first match wins.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("event build", ("flow_to_event (",)),
    ("encode", ("Codec.encode (", "(schemas/", "(<avro writer>")),
    ("produce", ("KafkaSink.send (", "BackgroundProducer.produce (")),
    (
        "rest of our hooks",
        tuple(
            f"(recorder/{m}.py"
            for m in ("addon", "capture", "event", "redact", "sink", "inflight", "accounting")
        ),
    ),
    ("producer poll thread", ("_poll_loop (", "_probe_loop (")),
    ("event loop machinery", ("asyncio/", "selectors.py")),
]
#: Frames that are the event loop calling into the work, not the loop's own work
#: (`Runner.run` for uvloop, whose loop is C: its own work has no frame below it).
_LOOP_ENTRY = (
    "Handle._run (",
    "BaseEventLoop._run_once (",
    "BaseEventLoop.run_forever (",
    "Runner.run (",
)


def _pyspy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"  # pip install py-spy into the venv
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    return _pyspy() is not None


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` for `seconds` into `out` (py-spy's raw format)."""
    return subprocess.Popen(
        [
            str(_pyspy()),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--gil",
            "--nonblocking",
            "--subprocesses",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def classify(stack: str) -> str:
    """The part one sampled stack (py-spy raw: frames joined by ';', outermost first) is in."""
    frames = [f.split("): ", 1)[-1] if f.startswith("thread (") else f for f in stack.split(";")]
    # What the loop called: the frames after the innermost loop entry point.
    inner = frames
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].startswith(_LOOP_ENTRY):
            inner = frames[i + 1 :]
            break
    text = ";".join(inner)
    for name, needles in PARTS:
        if name == "event loop machinery":
            # Only when nothing but the loop (asyncio, selectors) is on the stack.
            if all(any(n in f for n in needles) for f in inner):
                return name
            continue
        if any(n in text for n in needles):
            return name
    return "mitmproxy and the rest"


def breakdown(files: list[Path]) -> Counter[str]:
    """Samples per part over py-spy raw files."""
    parts: Counter[str] = Counter()
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                parts[classify(stack)] += int(count)
    return parts


def table(rows: list[tuple[str, Counter[str]]]) -> list[str]:
    """Markdown: each row's share of samples per part."""
    names = [name for name, _ in PARTS] + ["mitmproxy and the rest"]
    lines = [
        "| py-spy --gil, share of samples | " + " | ".join(names) + " | samples |",
        "| --- |" + " ---: |" * (len(names) + 1),
    ]
    for label, parts in rows:
        total = sum(parts.values())
        if not total:
            continue
        cells = " | ".join(f"{parts[n] / total:.1%}" for n in names)
        lines.append(f"| {label} | {cells} | {total} |")
    return lines
