"""What every deployment check shares: the one-line report, and the worker's drain timeout.

Each check prints one line, `ok` or `FAIL`, which .ci/validate-deploy counts.
The drain timeout is here because two checks compare it with how long the
platform waits before killing a worker (Compose's stop_grace_period,
Kubernetes' terminationGracePeriodSeconds): a worker killed while it drains
replays its in-flight window again.
"""

from __future__ import annotations

import sys
from typing import TextIO

# The worker's --drain-timeout when not given (see `trafficmirror worker --help`).
DEFAULT_DRAIN_TIMEOUT = 20.0
# The recorder's --drain-timeout and --flush-timeout when not given (`trafficmirror record --help`).
RECORD_DRAIN_TIMEOUT = 5.0
RECORD_FLUSH_TIMEOUT = 10.0


class Report:
    """Collects check results; one line each."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.failures = 0
        self.stream = stream

    def ok(self, message: str) -> None:
        print(f"  ok    {message}", file=self.stream)

    def fail(self, message: str) -> None:
        self.failures += 1
        print(f"  FAIL  {message}", file=self.stream)

    def check(self, passed: bool, message: str, problem: str = "") -> None:
        if passed:
            self.ok(message)
        else:
            self.fail(f"{message}: {problem}" if problem else message)

    def exit_code(self) -> int:
        return 1 if self.failures else 0


def drain_timeout(args: list[str], default: float = DEFAULT_DRAIN_TIMEOUT) -> float:
    """The --drain-timeout in a command's arguments, or `default` (the worker's)."""
    return seconds_option(args, "--drain-timeout", default)


def seconds_option(args: list[str], name: str, default: float) -> float:
    """The value of option `name` (`NAME N` or `NAME=N`) in `args`, or `default`."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return float(args[i + 1])
        if arg.startswith(f"{name}="):
            return float(arg.split("=", 1)[1])
    return default
