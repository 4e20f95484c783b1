"""Points in time as people type them on a command line: ISO 8601, or relative to now.

* ISO 8601: `2024-05-01`, `2024-05-01T10:00`, `2024-05-01 10:00:30.5`,
  `2024-05-01T10:00:00Z`, `2024-05-01T12:00:00+02:00`. Without a UTC offset
  the time is local time, as the person typing it means it.
* Relative, in the past: `-15m`, `-2h`, `-1h30m`, `-7d`, `-1w`, `-90s`
  (units s, m, h, d, w; fractions allowed: `-1.5h`).
* `now`.

Every result is timezone-aware, so two of them always compare.
"""

from __future__ import annotations

import datetime as dt
import re

from trafficmirror.plumbing.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"-((?:\d+(?:\.\d+)?[smhdw])+)")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """The moment `text` names (see the module doc); raises `ConfigError` with one line."""
    spec = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    if spec.lower() == "now":
        return now
    relative = _RELATIVE.fullmatch(spec.replace(" ", "").lower())
    if relative:
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(relative.group(1)))
        return now - dt.timedelta(seconds=seconds)
    try:
        when = dt.datetime.fromisoformat(spec)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: use ISO 8601 (2024-05-01T10:00, ...Z, ...+02:00), "
            "a relative time (-15m, -2h, -1d) or now"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()
