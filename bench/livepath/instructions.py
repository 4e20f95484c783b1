"""`bench/live_path.py --instructions`: the rows' instructions per request under callgrind.

Wall-clock latency on a shared machine moves with whatever else runs; the
instructions a proxy executes per request do not. With the variant rows
(`record:nohook`, `record:nosend`, ...: bench/livepath/variant.py) the count
splits `record`'s work per request into mitmproxy's own, building and encoding
the event, and producing it, and measures what a candidate cut saves. The
counting itself is bench/recording/instructions.py's (one keep-alive
connection, requests one at a time, the event loop apart from the other
threads); only the app (nginx, as in the wall-clock rows) and the rows differ.
"""

from __future__ import annotations

import http.client
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from recording.instructions import instructions

from livepath.targets import VARIANT

#: The rows `--instructions` counts unless --rows says otherwise.
DEFAULT_ROWS = (
    "mitmdump,record:nohook,record:nosend,record,record:uvloop,record:gc,record:nohook+uvloop+gc"
)


@dataclass
class Row:
    """What bench/recording/instructions.py needs of a row: a name and how to start it."""

    name: str

    @property
    def describe(self) -> str:
        return self.name

    def argv(self, app: str, port: int, bootstrap: str, topic: str) -> list[str]:
        listen = f"127.0.0.1:{port}"
        if self.name == "mitmdump":
            mitmdump = str(Path(sys.executable).parent / "mitmdump")
            return [mitmdump, "--mode", f"reverse:{app}@{listen}", "--set", "keep_host_header=true"]
        record = ["record", "-b", bootstrap, "-t", topic, "--upstream", app, "--listen", listen]
        if self.name == "record":
            return [sys.executable, "-m", "trafficmirror", *record]
        variants = self.name.split(":", 1)[1].replace("+", ",")
        return [sys.executable, str(VARIANT), variants, *record]


def _count(
    row: Row, app_url: str, bootstrap: str, logdir: Path, counts: tuple[int, int]
) -> tuple[float, float]:
    # Under valgrind a row takes a minute to listen; on a machine shared with
    # other test runs, another process may take the free port meanwhile (the
    # requests then get reset). Try again on a new port.
    for attempt in range(1, 4):
        try:
            return instructions(row, app_url, bootstrap, "livepath", logdir, counts)  # type: ignore[arg-type]
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            print(f"  {row.name}: attempt {attempt} failed ({exc}); again", flush=True)
    raise RuntimeError(f"{row.name}: no count after 3 attempts (logs in {logdir})")


def instruction_rows(
    names: list[str], app_url: str, bootstrap: str, logdir: Path, counts: tuple[int, int]
) -> list[str]:
    """Count each row's instructions per request; the markdown table (empty if no valgrind)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("--instructions needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return []
    measured: list[tuple[str, float, float]] = []
    for name in names:
        loop, others = _count(Row(name), app_url, bootstrap, logdir, counts)
        measured.append((name, loop, others))
        print(f"  {name:24} event loop {loop / 1e6:6.3f} M  other threads {others / 1e6:6.3f} M")
    base = next((m for m in measured if m[0] == "record"), None)
    lines = [
        "| row | M instructions/req, event loop | other threads | total | vs record |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, loop, others in measured:
        ratio = f"{(loop + others) / (base[1] + base[2]) - 1:+.1%}" if base else "-"
        lines.append(
            f"| {name} | {loop / 1e6:.3f} | {others / 1e6:.3f} | {(loop + others) / 1e6:.3f} "
            f"| {ratio} |"
        )
    return lines
