"""`bench/recorder.py --instructions`: instructions per request under valgrind's callgrind.

Wall-clock throughput swings with whatever else runs on the machine; the
instructions a proxy executes per request do not, because valgrind runs its
threads one at a time. The count is blind to cache misses and the kernel, so
it reads low, but it moves when the code does and holds still otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from procs import free_port, start, stop, wait_port

from recording.load import PATH
from recording.proxies import CONFIGS, MITMDUMP, TOPIC, Config, start_backends


def _get(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", PATH, headers={"Host": "bench.example"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"proxy answered {response.status}")


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def instructions(
    config: Config,
    app_url: str,
    bootstrap: str,
    topic: str,
    logdir: Path,
    counts: tuple[int, int],
) -> tuple[float, float]:
    """Instructions per request of `config`'s proxy under callgrind: (event loop, other threads).

    Counting starts after `counts[0]` warm-up requests and covers `counts[1]`
    requests, one at a time on one keep-alive connection. Valgrind runs the
    threads one at a time, so this is what the proxy executes in user space
    whatever else runs on the machine. The event loop is the main thread; the
    others are the producer's poll thread and librdkafka's threads (their
    share is larger here than at full speed: at valgrind's pace their batches
    are small).
    """
    warmup, measured = counts
    port = free_port()
    out = logdir / f"callgrind-{config.name}.out"
    argv = config.argv(app_url, port, bootstrap, topic)
    setenv: list[str] = []
    if argv[0] == "env":  # env VAR=value ... command: valgrind goes after the variables
        end = next(i for i, arg in enumerate(argv[1:], 1) if "=" not in arg)
        setenv, argv = argv[:end], argv[end:]
    if argv[0] == MITMDUMP:  # a script: valgrind must run its interpreter
        argv = [sys.executable, *argv]
    proc = start(
        [
            *setenv,
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            *argv,
        ],
        None,
        logdir / f"callgrind-{config.name}.log",
    )
    try:
        wait_port(port, timeout=600)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(warmup):
            _get(conn)
        _callgrind(proc.pid, "--instr=on")
        for _ in range(measured):
            _get(conn)
        _callgrind(proc.pid, "--instr=off")
        conn.close()
    finally:
        stop(proc, timeout=120)
    main_thread, others = 0, 0
    for dump in logdir.glob(f"callgrind-{config.name}.out*"):
        total = re.search(r"^totals: (\d+)", dump.read_text(), re.M)
        if total is None:
            continue
        if dump.name.endswith("-01"):
            main_thread += int(total[1])
        else:
            others += int(total[1])
    return main_thread / measured, others / measured


def instruction_run(args: argparse.Namespace, names: list[str]) -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("--instructions needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-cg-"))
    try:
        procs, bootstrap, app_url = start_backends(None, logdir)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        counts = (args.warmup_requests, args.requests)
        print(
            f"callgrind: {counts[1]} requests after {counts[0]} warm-up, one keep-alive "
            f"connection, GET {PATH}; logs in {logdir}",
            flush=True,
        )
        rows = []
        for name in names:
            config = Config(name, CONFIGS[name])
            loop, others = instructions(config, app_url, bootstrap, TOPIC, logdir, counts)
            rows.append((config, loop, others))
            print(
                f"  {name:8} event loop {loop / 1e6:6.3f} M  other threads {others / 1e6:6.3f} M",
                flush=True,
            )
    finally:
        for proc in procs:
            stop(proc)
    base = next((r for r in rows if r[0].name == "plain"), None)
    print()
    print("| configuration | M instructions/req, event loop | other threads | total | vs plain |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for config, loop, others in rows:
        ratio = f"{(loop + others) / (base[1] + base[2]) - 1:+.1%}" if base else "-"
        print(
            f"| {config.describe} | {loop / 1e6:.3f} | {others / 1e6:.3f} "
            f"| {(loop + others) / 1e6:.3f} | {ratio} |"
        )
    return 0
