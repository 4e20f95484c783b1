"""Replay safety: never send recorded production traffic back to production by mistake.

A target that is the host production was asked for (the event's authority) or
the upstream the recorder forwarded to (the event's `server` address: the real
production app) would replay real users' writes against the real service.
Unless `--allow-original-host` is given, such a record is not sent: it is
counted `skipped` with reason `original-host` (in the metric and as a
`skipped` result), the first one is logged at ERROR level, later ones only
counted, and `replay range` exits 1 when it skipped any. The worker keeps
going: a topic may hold traffic of several hosts. Addresses are compared, not
strings (`canonical_host`), and the target's name is resolved once, when it is
first checked, so a name for the same address is caught too.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from replayer.models import DEFAULT_PORTS, Skipped, Target
from schemas.records import HttpExchange

logger = logging.getLogger(__name__)

#: What every name and address of this host compares as.
LOOPBACK = "loopback"
#: The characters of an IPv4 address in a form inet_aton(3) reads (127.1, 0x7f.1, 2130706433).
_NUMERIC_V4 = re.compile(r"[0-9a-fx.]+")

Endpoint = tuple[str, int | None]


@dataclass(frozen=True)
class SafetyOptions:
    """How careful a replay is (the CLI's `--allow-original-host`).

    `allow_original_host`: send records whose recorded authority or upstream
    is the target too (replaying production traffic to production on purpose).
    """

    allow_original_host: bool = False


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `text` is in any form the OS accepts for one, else None (a name).

    IPv6 literals (a zone `%eth0` dropped), and IPv4 in every form inet_aton(3)
    reads: dotted quads, fewer parts (`127.1`), octal and hex parts
    (`0177.0.0.01`, `0x7f000001`) and one decimal number (`2130706433`).
    An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is its IPv4 address.
    """
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            text.split("%", 1)[0]
        )
    except ValueError:
        if not _NUMERIC_V4.fullmatch(text) or not text[0].isdigit():
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# Every record's recorded upstream comes through here: remembered like
# `host_port` below (bounded, since the hosts come from traffic).
@lru_cache(maxsize=1024)
def canonical_host(host: str) -> str:
    """The host as compared: an address in its one standard form, a name in lower case.

    No trailing dot, no IPv6 brackets; `localhost`, `*.localhost`, every
    loopback address (127.0.0.0/8, ::1) and the unspecified address (0.0.0.0,
    ::, which a client connects to as this host) are all `LOOPBACK`.
    """
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost" or host.endswith(".localhost"):
        return LOOPBACK
    address = parse_address(host)
    if address is None:
        return host
    return LOOPBACK if address.is_loopback or address.is_unspecified else str(address)


# Checked for every record, and parsing plus `ipaddress` cost more than the rest
# of the check: a topic holds traffic of a few hosts, so remember the answers
# (bounded, since authorities come from traffic).
@lru_cache(maxsize=1024)
def host_port(authority: str, scheme: str) -> Endpoint:
    """(`canonical_host(host)`, port) of `host[:port]`; the scheme's default port if none.

    Two authorities are the same when these are equal. Ports have the scheme's
    default filled in: the recorded authority's under the event's scheme, the
    target's under its own (`shop` recorded over http is `shop:80`; a target
    `https://shop` is `shop:443`, not the same). A name is not resolved here
    (see `TargetAddresses` for the target's).
    """
    try:
        parts = urlsplit(f"//{authority}")
        port = parts.port
        host = parts.hostname or ""
    except ValueError:  # a bad port: compare the text as it is
        return authority.strip().lower(), None
    if port is None:
        port = DEFAULT_PORTS.get(scheme.lower())
    return canonical_host(host), port


def resolve(host: str, port: int | None) -> frozenset[Endpoint]:
    """Every (canonical address, port) `host` resolves to; empty if it does not resolve."""
    if port is None:
        return frozenset()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        logger.debug("original-host check: %s does not resolve (%s)", host, exc)
        return frozenset()
    return frozenset((canonical_host(str(info[4][0])), port) for info in infos)


class TargetAddresses:
    """Each target's own endpoint and the addresses its name resolves to, looked up once.

    Once per target for the whole replay: a per-record look-up would cost a DNS
    query each, and the answer that matters is the one the replay connects to.
    """

    def __init__(self) -> None:
        self._known: dict[Target, frozenset[Endpoint]] = {}

    def of(self, target: Target) -> frozenset[Endpoint]:
        """The endpoints `target` names: (host, port) as written, and each resolved address."""
        known = self._known.get(target)
        if known is None:
            host, port = host_port(target.host_port, target.scheme)
            name = urlsplit(f"//{target.host_port}").hostname or host
            known = frozenset({(host, port)}) | resolve(name, port)
            self._known[target] = known
        return known


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


def _upstream(event: HttpExchange) -> tuple[Endpoint, str] | None:
    """The recorded upstream as compared, and as written; None if there was none."""
    server = event["server"]
    if server is None or not server["host"]:
        return None
    return (canonical_host(server["host"]), server["port"]), f"{server['host']}:{server['port']}"


class OriginalHostGuard:
    """Raises `Skipped("original-host")` for events recorded from the target's own host."""

    def __init__(self, target: Target | None, options: SafetyOptions | None = None) -> None:
        self.options = options or SafetyOptions()
        #: The target checked when `check()` is given none (None: only with a target map).
        self.target = target
        self.refused = 0
        self.addresses = TargetAddresses()
        if target is not None and not self.options.allow_original_host:
            self.addresses.of(target)  # resolved now, at start, not with the first record

    def check(self, event: HttpExchange, target: Target | None = None) -> None:
        """Pass, or raise `Skipped` with reason `original-host`.

        `target`: where this event goes (with a target map); default: the guard's.
        Refused when the recorded authority (host and port) or the recorded
        upstream (the event's server address) is one of the target's endpoints.
        """
        if self.options.allow_original_host:
            return
        target = target or self.target
        if target is None:
            return
        endpoints = self.addresses.of(target)
        authority = recorded_authority(event)
        if authority and host_port(authority, event["scheme"] or "http") in endpoints:
            what = f"the recorded host {authority!r}"
        else:
            upstream = _upstream(event)
            if upstream is None or upstream[0] not in endpoints:
                return
            what = f"the recorded upstream {upstream[1]}"
        self.refused += 1
        if self.refused == 1:
            logger.error(
                "REFUSED: target %s is %s of exchange %s: not replaying production traffic "
                "to production (pass --allow-original-host to do it on purpose); such records "
                "are skipped and counted as skipped-original-host",
                target.origin,
                what,
                event["id"],
            )
        raise Skipped("original-host", f"target {target.origin} is {what}")
