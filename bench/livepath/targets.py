"""The rows of the live-path benchmark: what each one puts between the client and the app.

All start once, before the first measurement, and stay up (idle when not
measured) until the end, so every row sees the same machine in every round.
`direct` is the app itself; every proxy forwards to that same app, keeps its
connections to it alive and passes the client's Host on. `record --workers 2`
and the nginx mirror to `record --mirror` need options other branches are
adding: when this checkout's `record --help` lacks one, the row is skipped
with a note instead of failing the run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from procs import free_port, start, stop, wait_port

from livepath.nginx import proxy_config, start_nginx, stub_config

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
MITMDUMP = str(BIN / "mitmdump")
VARIANT = Path(__file__).resolve().parent / "variant.py"


@dataclass
class Target:
    """One row: where the client connects, what it is compared with, which processes it is."""

    name: str
    label: str
    baseline: str | None  # the row its added latency is taken over
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    skipped: str | None = None  # why the row was not run

    @property
    def python(self) -> bool:
        """True when the row's first process is Python (mitmproxy), which py-spy can sample."""
        return bool(self.procs) and self.name not in ("direct", "nginx", "mirror-stub")


@dataclass
class Env:
    """What the targets are started with: the app, the broker, the log folder, the CLI's help."""

    app_port: int
    bootstrap: str
    logdir: Path
    record_help: str

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"


def record_help() -> str:
    """`trafficmirror record --help` of this checkout (which options it has)."""
    out = subprocess.run(
        [sys.executable, "-m", "trafficmirror", "record", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return out.stdout


def _record_argv(env: Env, port: int, topic: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trafficmirror",
        "record",
        "-b",
        env.bootstrap,
        "-t",
        topic,
        "--listen",
        f"127.0.0.1:{port}",
        *extra,
    ]


def _proc(env: Env, name: str, argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = start(argv, None, env.logdir / f"{name}.log")
    try:
        wait_port(port, timeout=60)
    except TimeoutError:
        stop(proc)
        log = (env.logdir / f"{name}.log").read_text(errors="replace")
        raise RuntimeError(f"{name} did not start: {log.strip()[-800:]}") from None
    return proc


def _direct(env: Env, t: Target) -> None:
    t.port = env.app_port


def _nginx(env: Env, t: Target) -> None:
    t.port = free_port()
    prefix = env.logdir / t.name
    prefix.mkdir()
    t.procs.append(start_nginx(prefix, proxy_config(prefix, t.port, env.app_port), t.port))


def _mitmdump(env: Env, t: Target) -> None:
    t.port = free_port()
    argv = [
        MITMDUMP,
        "--mode",
        f"reverse:{env.app_url}@127.0.0.1:{t.port}",
        "--set",
        "keep_host_header=true",
    ]
    t.procs.append(_proc(env, t.name, argv, t.port))


def _record(env: Env, t: Target) -> None:
    t.port = free_port()
    argv = _record_argv(env, t.port, "livepath", "--upstream", env.app_url)
    t.procs.append(_proc(env, t.name, argv, t.port))


def _variant(env: Env, t: Target) -> None:
    variants = t.name.split(":", 1)[1].replace("+", ",")
    t.port = free_port()
    argv = _record_argv(env, t.port, "livepath", "--upstream", env.app_url)
    argv[1:3] = [str(VARIANT), variants]  # python VARIANT.py VARIANTS record ...
    t.procs.append(_proc(env, t.name.replace(":", "-"), argv, t.port))


def _record_workers(env: Env, t: Target) -> None:
    if "--workers" not in env.record_help:
        t.skipped = "this checkout's `record` has no --workers yet"
        return
    t.port = free_port()
    argv = _record_argv(env, t.port, "livepath", "--upstream", env.app_url, "--workers", "2")
    t.procs.append(_proc(env, t.name, argv, t.port))


def _mirror(env: Env, t: Target) -> None:
    if "--mirror" not in env.record_help:
        t.skipped = "this checkout's `record` has no --mirror yet"
        return
    rec_port = free_port()
    t.procs.append(
        _proc(
            env,
            f"{t.name}-record",
            _record_argv(env, rec_port, "livepath-mirror", "--mirror"),
            rec_port,
        )
    )
    t.port = free_port()
    prefix = env.logdir / t.name
    prefix.mkdir()
    config = proxy_config(prefix, t.port, env.app_port, mirror_port=rec_port)
    t.procs.append(start_nginx(prefix, config, t.port))


def _mirror_stub(env: Env, t: Target) -> None:
    stub_port = free_port()
    stub_dir = env.logdir / f"{t.name}-target"
    stub_dir.mkdir()
    t.procs.append(start_nginx(stub_dir, stub_config(stub_dir, stub_port), stub_port))
    t.port = free_port()
    prefix = env.logdir / t.name
    prefix.mkdir()
    t.procs.append(
        start_nginx(prefix, proxy_config(prefix, t.port, env.app_port, stub_port), t.port)
    )


#: Every row, in table order: name -> (label, baseline, how to start it).
CATALOGUE: dict[str, tuple[str, str | None, Callable[[Env, Target], None]]] = {
    "direct": ("direct to the app", None, _direct),
    "nginx": ("nginx reverse proxy", "direct", _nginx),
    "mitmdump": ("mitmdump, reverse mode", "direct", _mitmdump),
    "record": ("trafficmirror record", "direct", _record),
    "record-w2": ("record --workers 2", "direct", _record_workers),
    "mirror": ("nginx mirroring to record --mirror", "nginx", _mirror),
    "mirror-stub": ("nginx mirroring to a stub (nginx, return 200)", "nginx", _mirror_stub),
}


def check_row(name: str) -> str | None:
    """Why `name` is not a row (None when it is): a catalogue name or `record:VARIANT[+VARIANT]`."""
    if name in CATALOGUE:
        return None
    if name.startswith("record:"):
        from livepath.variant import VARIANTS

        unknown = [v for v in name.split(":", 1)[1].split("+") if v not in VARIANTS]
        if not unknown:
            return None
        return f"unknown variant(s) {', '.join(unknown)} in {name}; known: {', '.join(VARIANTS)}"
    return f"unknown row {name}; known: {', '.join(CATALOGUE)}, record:VARIANT[+VARIANT]"


def _row(name: str) -> tuple[str, str | None, Callable[[Env, Target], None]]:
    if name in CATALOGUE:
        return CATALOGUE[name]
    return f"record + {name.split(':', 1)[1]} (bench variant)", "direct", _variant


def start_targets(env: Env, names: list[str]) -> list[Target]:
    """Start the rows `names`: catalogue rows in its order, then variants as given."""
    targets: list[Target] = []
    ordered = [n for n in CATALOGUE if n in names] + [n for n in names if n not in CATALOGUE]
    try:
        for name in ordered:
            label, baseline, starter = _row(name)
            target = Target(name, label, baseline)
            targets.append(target)
            starter(env, target)
    except BaseException:
        stop_targets(targets)
        raise
    return targets


def stop_targets(targets: list[Target]) -> None:
    for target in targets:
        for proc in reversed(target.procs):
            stop(proc)
