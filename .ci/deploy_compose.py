"""compose/docker-compose.yml beyond its schema (`compose`).

The compose-spec schema itself is checked by check-jsonschema in
.ci/validate-deploy; what it cannot see is that every worker service stops
more slowly than it drains (stop_grace_period > --drain-timeout).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from deploy_common import Report, drain_timeout

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def compose(path: Path) -> int:
    report = Report()
    doc = yaml.safe_load(path.read_text())
    for name, service in (doc.get("services") or {}).items():
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        if not command or command[0] != "worker":
            continue
        drain = drain_timeout(command)
        grace = _seconds(service.get("stop_grace_period", "10s"))
        report.check(
            grace is not None and grace > drain,
            f"compose service {name}: stop_grace_period ({grace}s) > --drain-timeout ({drain}s)",
            "Docker would SIGKILL the worker while it drains",
        )
    return report.exit_code()
