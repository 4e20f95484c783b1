"""Run `trafficmirror` with its stdout on a pseudo-terminal, as a user's shell would.

What a command prints on a terminal can differ from what it prints into a pipe
(`inspect` picks its table, `report` its colours), so the tests of those
defaults need a real terminal: `pty.openpty()` gives one. The terminal turns
each "\n" into "\r\n"; the output is returned with plain newlines.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence


def run_in_terminal(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, str, str]:
    """(exit code, stdout as the terminal showed it, stderr) of `trafficmirror ARGS`."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trafficmirror", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(max(0.1, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return proc.returncode, b"".join(chunks).decode().replace("\r\n", "\n"), stderr
