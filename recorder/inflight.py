"""The exchanges that have begun and that the recorder has not taken yet.

An exchange is recorded when it ends (the `response` or `error` hook). A stop
must know which ones are still under way: the drain waits for them, keeps
their client connections open, and records those still unfinished when it
gives up, so that every exchange the proxy saw is accounted for
(`recorder.drain`). `InFlight` is a child addon of the recorder: it notes a
flow at `requestheaders`, and the recorder removes it when it takes the flow.
Per request that is one dictionary insert and one delete; the gauge
`trafficmirror_recorder_in_flight` is computed only when /metrics is read.
"""

from __future__ import annotations

import weakref
from typing import Any

from mitmproxy import http
from prometheus_client import Gauge

IN_FLIGHT = Gauge(
    "trafficmirror_recorder_in_flight",
    "Exchanges begun (request headers received) and not yet taken by the recorder.",
)
# Every tracker of the process (a reloaded script makes a new one); the gauge
# adds them up when scraped, so the live path never touches it.
_TRACKERS: weakref.WeakSet[InFlight] = weakref.WeakSet()
IN_FLIGHT.set_function(lambda: sum(len(tracker) for tracker in list(_TRACKERS)))


class InFlight:
    """Flows from their request headers until the recorder takes them, oldest first.

    Only the event loop's thread touches it (mitmproxy runs every hook there).
    """

    def __init__(self) -> None:
        self._flows: dict[str, http.HTTPFlow] = {}
        _TRACKERS.add(self)

    # -- mitmproxy hook ---------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._flows[flow.id] = flow

    # -- the recorder's side ----------------------------------------------------

    def finish(self, flow: http.HTTPFlow) -> bool:
        """Forget `flow`: the recorder has taken it. False if it was not tracked."""
        return self._flows.pop(flow.id, None) is not None

    # -- the drain's side -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._flows)

    def __bool__(self) -> bool:
        return bool(self._flows)

    def unfinished(self) -> list[http.HTTPFlow]:
        """The flows still under way, oldest first (a copy: the recorder may finish them)."""
        return list(self._flows.values())

    def busy_connections(self) -> set[Any]:
        """Ids of the client connections with an exchange under way."""
        return {flow.client_conn.id for flow in self._flows.values()}
