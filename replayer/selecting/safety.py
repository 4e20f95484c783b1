"""Replay safety: never send recorded production traffic back to production by mistake.

A target whose host and port equal the recorded original authority of an event
(the Host the client asked production for) would replay real users' writes
against the real service. Unless `--allow-original-host` is given, such a
record is not sent: it is counted `skipped` with reason `original-host` (in
the metric and as a `skipped` result), the first one is logged at ERROR level,
later ones only counted, and `replay range` exits 1 when it skipped any. The
worker keeps going: a topic may hold traffic of several hosts. With
`--target-map` each record is checked against the target it goes to.
`host_port` says how a host and port are compared (no DNS look-ups).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from replayer.models import DEFAULT_PORTS, Skipped, Target
from schemas.records import HttpExchange

logger = logging.getLogger(__name__)

_LOOPBACK = "loopback"


@dataclass(frozen=True)
class SafetyOptions:
    """How careful a replay is (the CLI's `--allow-original-host`).

    `allow_original_host`: send records whose recorded authority is the
    target too (replaying production traffic to production on purpose).
    """

    allow_original_host: bool = False


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot or brackets, IP literals canonical, loopback as one."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost" or host.endswith(".localhost"):
        return _LOOPBACK
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return _LOOPBACK if address.is_loopback else str(address)


# Checked for every record, and parsing plus `ipaddress` cost more than the rest
# of the check: a topic holds traffic of a few hosts, so remember the answers
# (bounded, since authorities come from traffic).
@lru_cache(maxsize=1024)
def host_port(authority: str, scheme: str) -> tuple[str, int | None]:
    """(`normalize_host(host)`, port) of `host[:port]`; the scheme's default port if none.

    Two authorities are the same when these are equal. No DNS look-ups: a name
    and an address of the same machine are not recognised as one. Hosts compare
    case-insensitively, without a trailing dot and IPv6 brackets; IP literals
    by value (`::1` = `0:0:0:0:0:0:0:1`); `localhost`, `*.localhost`,
    127.0.0.0/8 and `::1` are all the same host (the loopback). Ports have the
    scheme's default filled in: the recorded authority's under the event's
    scheme, the target's under its own (`shop` recorded over http is
    `shop:80`; a target `https://shop` is `shop:443`, not the same).
    """
    try:
        parts = urlsplit(f"//{authority}")
        port = parts.port
        host = parts.hostname or ""
    except ValueError:  # a bad port: compare the text as it is
        return authority.strip().lower(), None
    if port is None:
        port = DEFAULT_PORTS.get(scheme.lower())
    return normalize_host(host), port


def recorded_authority(event: HttpExchange) -> str:
    """The authority production was asked for: the event's, else the recorded Host header."""
    authority = event["authority"]
    if authority:
        return authority
    flat = event["request"]["headers"]
    for i in range(0, len(flat) - 1, 2):
        if flat[i].lower() == b"host":
            return flat[i + 1].decode("latin-1")
    return ""


class OriginalHostGuard:
    """Raises `Skipped("original-host")` for events recorded from the target's own host."""

    def __init__(self, target: Target | None, options: SafetyOptions | None = None) -> None:
        self.options = options or SafetyOptions()
        #: The target checked when `check()` is given none (None: only with a target map).
        self.target = target
        self.refused = 0

    def check(self, event: HttpExchange, target: Target | None = None) -> None:
        """Pass, or raise `Skipped` with reason `original-host`.

        `target`: where this event goes (with a target map); default: the guard's.
        """
        if self.options.allow_original_host:
            return
        target = target or self.target
        if target is None:
            return
        authority = recorded_authority(event)
        if not authority:
            return
        if host_port(authority, event["scheme"] or "http") != host_port(
            target.host_port, target.scheme
        ):
            return
        self.refused += 1
        if self.refused == 1:
            logger.error(
                "REFUSED: target %s is the recorded original host %r of exchange %s: not "
                "replaying production traffic to production (pass --allow-original-host "
                "to do it on purpose); such records are skipped and counted as "
                "skipped-original-host",
                target.origin,
                authority,
                event["id"],
            )
        raise Skipped("original-host", f"target {target.origin} is the recorded host {authority!r}")
