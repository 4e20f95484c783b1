"""The proxies under test and the backends they all share: the app and the broker.

Each `Config` is one row of the tables: how to start that proxy (`argv`) and
the measurements taken of it. All of them run in reverse mode in front of the
same sample app and record (when they record) to the same topic on the same
in-memory broker, so the rows differ only in the proxy.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from procs import free_port, start, start_broker, stop, wait_port

from recording.load import Result

ROOT = Path(__file__).resolve().parent.parent.parent
ADDON = ROOT / "recorder" / "addon.py"
FLOOR = ROOT / "bench" / "scripts" / "floor_addon.py"
BIN = Path(sys.executable).parent
MITMDUMP = str(BIN / "mitmdump") if (BIN / "mitmdump").exists() else shutil.which("mitmdump")
#: The topic every recording proxy produces to.
TOPIC = "bench"

CONFIGS = {
    "plain": "mitmdump, reverse mode, no addon",
    "plain-q": "mitmdump -q (no flow printing), no addon",
    "script": "mitmdump -s floor_addon.py, producing nothing",
    "floor-bare": "mitmdump -s floor_addon.py, fixed bytes, bare confluent-kafka",
    "floor": "mitmdump -s floor_addon.py, fixed bytes, our producer",
    "addon": "mitmdump -s recorder/addon.py",
    "record": "trafficmirror record",
}

#: The rows of bench/scripts/floor_addon.py, and its TRAFFICMIRROR_BENCH_FLOOR.
_FLOOR_MODES = {"script": "none", "floor-bare": "bare", "floor": "sink"}


@dataclass
class Config:
    name: str
    describe: str
    results: list[Result] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)

    def argv(self, app: str, port: int, bootstrap: str, topic: str) -> list[str]:
        listen = f"127.0.0.1:{port}"
        # Same live behaviour for all three: reverse mode, client's Host kept.
        common = ["--mode", f"reverse:{app}@{listen}", "--set", "keep_host_header=true"]
        if self.name == "plain":
            return [str(MITMDUMP), *common]
        if self.name == "plain-q":
            return [str(MITMDUMP), "-q", *common]
        if self.name == "addon":
            return [
                str(MITMDUMP),
                "-s",
                str(ADDON),
                *common,
                "--set",
                f"trafficmirror_bootstrap_servers={bootstrap}",
                "--set",
                f"trafficmirror_topic={topic}",
            ]
        if self.name in _FLOOR_MODES:
            return [
                "env",
                f"TRAFFICMIRROR_BENCH_FLOOR={_FLOOR_MODES[self.name]}",
                f"TRAFFICMIRROR_BENCH_BOOTSTRAP={bootstrap}",
                f"TRAFFICMIRROR_BENCH_TOPIC={topic}",
                str(MITMDUMP),
                "-s",
                str(FLOOR),
                *common,
            ]
        if self.name == "record":
            return [
                sys.executable,
                "-m",
                "trafficmirror",
                "record",
                "-b",
                bootstrap,
                "-t",
                topic,
                "--upstream",
                app,
                "--listen",
                listen,
            ]
        raise ValueError(self.name)

    def median(self) -> Result:
        return Result(
            statistics.median(r.rps for r in self.results),
            statistics.median(r.p50_ms for r in self.results),
            statistics.median(r.p99_ms for r in self.results),
            sum(r.errors for r in self.results),
            sum(r.requests for r in self.results),
            statistics.median(r.cpu_us for r in self.results),
        )


def start_app(cpus: set[int] | None, logdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The sample app every proxy is put in front of: (process, its URL)."""
    port = free_port()
    app = start(
        [sys.executable, "-m", "trafficmirror.demo.apps", "app", "--port", str(port)],
        cpus,
        logdir / "app.log",
    )
    wait_port(port)
    return app, f"http://127.0.0.1:{port}"


def start_backends(
    cpus: set[int] | None, logdir: Path
) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    """The broker (topic `TOPIC`, 4 partitions) and the app: (processes, bootstrap, app URL).

    Raises RuntimeError when the broker does not start.
    """
    broker, bootstrap = start_broker([f"{TOPIC}:4"], cpus, logdir / "broker.log")
    try:
        app, app_url = start_app(cpus, logdir)
    except BaseException:
        stop(broker)
        raise
    return [broker, app], bootstrap, app_url
