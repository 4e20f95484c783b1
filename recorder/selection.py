"""Which live exchanges the recorder writes: `trafficmirror_filter` / `record --filter`.

An exchange is matched when it ends (response or error hook), with the same
mitmproxy filter language the replayer's `--filter` takes, so response-side
operators work too (`~c 500`, `~hs`, `~bs`, `~e`). A flow that does not match
is not recorded and is counted (`filtered` in the exit summary, the
`trafficmirror_recorder_filtered` metric); the live exchange is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mitmproxy import flowfilter
from prometheus_client import Counter

from trafficmirror.plumbing.errors import ConfigError

# Module-level, like the sink's metrics: a reconfigured or reloaded addon must
# not register it twice.
FILTERED = Counter(
    "trafficmirror_recorder_filtered",
    "Exchanges not recorded because they do not match trafficmirror_filter.",
)


def parse_flow_filter(expr: str | None) -> Callable[[Any], bool] | None:
    """The compiled filter, None for no filter (None or blank); `ConfigError` if invalid."""
    if expr is None or not expr.strip():
        return None
    try:
        matcher: Callable[[Any], bool] = flowfilter.parse(expr)
    except ValueError:
        raise ConfigError(
            f"{expr!r} is not a mitmproxy filter expression (e.g. '~m POST & ~u /api')"
        ) from None
    return matcher
