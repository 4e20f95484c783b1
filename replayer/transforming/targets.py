"""Which target a record goes to: `--target`, or per recorded authority with `--target-map`.

One topic often holds the traffic of several services; `--target-map
AUTHORITY=URL` sends each one's to its own shadow. An authority is compared
case-insensitively, without a trailing dot or IPv6 brackets; a map key without
a port matches its host on any port, one with a port matches that port only
(an event without a port has its scheme's default: `shop:443` matches an https
event for `shop`). A key with a port wins over one without. The event's
authority is its `authority` field, else its recorded Host header. Events of
authorities not in the map go to `--target` when it is given, else they are
skipped and counted as `unmapped-authority`. No DNS look-ups.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from replayer.models import DEFAULT_PORTS, Skipped, Target
from replayer.transforming.config import TargetMapping
from schemas.records import HttpExchange
from trafficmirror.plumbing.errors import ConfigError

__all__ = ["Routes", "authority_key", "event_authority", "parse_mapping"]


def _host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


@lru_cache(maxsize=1024)
def authority_key(authority: str, scheme: str | None = None) -> tuple[str, int | None]:
    """(host, port) of `host[:port]`: normalised host; the scheme's default port, if any.

    Without a port and without a scheme the port is None (any port: map keys).
    Raises `ValueError` for a bad port.
    """
    parts = urlsplit(f"//{authority.strip()}")
    port = parts.port
    host = _host(parts.hostname or "")
    if port is None and scheme is not None:
        port = DEFAULT_PORTS.get(scheme.lower())
    return host, port


def event_authority(event: HttpExchange) -> str:
    """The authority production was asked for: the event's, else the recorded Host header."""
    authority = event["authority"]
    if authority:
        return authority
    flat = event["request"]["headers"]
    for i in range(0, len(flat) - 1, 2):
        if flat[i].lower() == b"host":
            return flat[i + 1].decode("latin-1")
    return ""


def parse_mapping(spec: str, where: str) -> TargetMapping:
    """`AUTHORITY=URL` → a `TargetMapping`; raises `ConfigError` naming `where`."""
    authority, sep, url = spec.partition("=")
    authority, url = authority.strip(), url.strip()
    if not sep or not authority or not url:
        raise ConfigError(f"{where}: {spec!r} is not AUTHORITY=URL")
    return mapping(authority, url, where)


def mapping(authority: str, url: str, where: str) -> TargetMapping:
    """A `TargetMapping` of `authority` to `url`, both checked; raises `ConfigError`."""
    if "/" in authority or "@" in authority or any(c.isspace() for c in authority):
        raise ConfigError(f"{where}: {authority!r} is not an authority (host or host:port)")
    try:
        host, port = authority_key(authority)
    except ValueError:
        raise ConfigError(f"{where}: {authority!r} has a bad port") from None
    if not host:
        raise ConfigError(f"{where}: {authority!r} has no host")
    try:
        Target.parse(url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return TargetMapping(authority, host, port, url, where)


class Routes:
    """Picks the target of each event: the map's entry for its authority, else the default."""

    def __init__(self, default: Target | None, mappings: tuple[TargetMapping, ...] = ()) -> None:
        if default is None and not mappings:
            raise ConfigError("give --target, or --target-map for each recorded authority")
        self.default = default
        # Later entries win (the command line's over the file's).
        self._exact: dict[tuple[str, int | None], Target] = {}
        self._any_port: dict[str, Target] = {}
        for entry in mappings:
            target = Target.parse(entry.url)
            if entry.port is None:
                self._any_port[entry.host] = target
            else:
                self._exact[(entry.host, entry.port)] = target
        self.mapped = bool(mappings)
        self.targets: tuple[Target, ...] = tuple(
            dict.fromkeys(
                ([default] if default is not None else [])
                + list(self._exact.values())
                + list(self._any_port.values())
            )
        )

    def target_for(self, event: HttpExchange) -> Target:
        """The target of `event`; raises `Skipped("unmapped-authority")` when there is none."""
        if not self.mapped:
            return self.default  # type: ignore[return-value]  # __init__: default or a map
        authority = event_authority(event)
        target = self._lookup(authority, event["scheme"] or "http")
        if target is not None:
            return target
        if self.default is not None:
            return self.default
        raise Skipped(
            "unmapped-authority",
            f"no --target-map entry for the recorded authority {authority[:80]!r} and no --target",
        )

    def _lookup(self, authority: str, scheme: str) -> Target | None:
        try:
            host, port = authority_key(authority, scheme)
        except ValueError:
            return None
        return self._exact.get((host, port)) or self._any_port.get(host)

    def describe(self) -> str:
        """`http://shadow:8080`, or `shop=http://a:1, api:8443=http://b:2[, rest to http://c]`."""
        if not self.mapped:
            assert self.default is not None  # noqa: S101 (__init__ makes sure)
            return self.default.origin
        pairs = [f"{host}:{port}={t.origin}" for (host, port), t in self._exact.items()]
        pairs += [f"{host}={t.origin}" for host, t in self._any_port.items()]
        rest = f", the rest to {self.default.origin}" if self.default else ", the rest skipped"
        return ", ".join(pairs) + rest
