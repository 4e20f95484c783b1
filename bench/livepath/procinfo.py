"""What a proxy process tree uses, read from /proc: its processes, peak and current RSS, CPU time.

A proxy is its process and every descendant (nginx's master and worker,
`record --workers N`'s supervisor and children), so every figure is the sum
over the tree. Peak RSS is each process's VmHWM summed: an upper bound of the
tree's peak (the processes need not peak at the same moment), exact for a
single process. `reset_peak` writes 5 to /proc/PID/clear_refs, which sets
VmHWM back to the current RSS, so a peak can be taken over one phase of the run.
"""

from __future__ import annotations

import os
from pathlib import Path


def tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pids: list[int]) -> float:
    """Current RSS of `pids` together, MB."""
    return sum(_status_kb(pid, "VmRSS") for pid in pids) / 1024


def peak_mb(pids: list[int]) -> float:
    """Sum of the processes' peak RSS (VmHWM) since start or `reset_peak`, MB."""
    return sum(_status_kb(pid, "VmHWM") for pid in pids) / 1024


def reset_peak(pids: list[int]) -> None:
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def cpu_seconds(pids: list[int]) -> float:
    """On-CPU time of `pids`, all their threads, so far (schedstat: nanoseconds, not ticks)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """On-CPU seconds so far of `pids`' threads, by kind: each process's main thread
    (`main`), librdkafka's (`librdkafka`, named rdk:*), and the rest (`other threads`;
    Python 3.11 does not name its threads for the OS, so the producer's poll thread
    is one of these)."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
            if tid == str(pid):
                kind = "main"
            elif comm.startswith("rdk:"):
                kind = "librdkafka"
            else:
                kind = "other threads"
            out[kind] = out.get(kind, 0.0) + ns / 1e9
    return out
