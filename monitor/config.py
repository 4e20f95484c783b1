"""The monitor's settings: thresholds (a rules file, `--threshold`) and the run's wiring.

`Thresholds` holds every number a rule compares with, each with its default
and what it means; the `--rules FILE` (YAML) and `--threshold NAME=VALUE`
items (the same names, dashes or underscores) both fill it, the items winning. The defaults
aim at "quiet on ordinary traffic": a rate rule needs a learned baseline
(`warmup_seconds` of history) and both a factor and an absolute floor, so a
client going from 1 to 3 requests a minute is not an alert. `MonitorConfig`
is the frozen whole a run takes. Bad values are `ConfigError`s (one line).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.kafka import KafkaSettings

#: Signature detectors, by the alert kind they raise.
SIGNATURES = ("sql_injection", "xss", "path_traversal", "scanner")


@dataclass(frozen=True)
class Thresholds:
    """What counts as an anomaly; every field is a flag and a key of the rules file."""

    #: Length of the sliding window the rates are measured over (seconds of recorded time).
    window_seconds: float = 10.0
    #: Half-life of the learned usual rate (an exponentially weighted mean of
    #: per-second counts older than the window): how fast "usual" forgets.
    baseline_half_life_seconds: float = 600.0
    #: History a client or endpoint needs before its rate is judged against its baseline.
    warmup_seconds: float = 60.0
    #: A client's or endpoint's window rate at least this many times its usual rate ...
    rate_factor: float = 10.0
    #: ... and at least this many requests in the window raise client_rate / endpoint_rate.
    rate_min_requests: int = 30
    #: 401/403/404 responses to one client in the window that raise status_burst ...
    status_burst_min: int = 20
    #: ... when also this many times its usual rate of them (without history: the floor alone).
    status_burst_factor: float = 5.0
    #: A client first seen less than this long ago is new (new_client_hammering).
    new_client_seconds: float = 300.0
    #: Requests from a new client to one endpoint in the window that raise new_client_hammering ...
    hammer_min_requests: int = 50
    #: ... when they are at least this share of the client's requests in the window.
    hammer_share: float = 0.8
    #: The same alert (kind, client, endpoint) is not raised again within this many seconds.
    cooldown_seconds: float = 60.0
    #: Records may arrive this late (seconds of recorded time) before their second is judged.
    lateness_seconds: float = 1.0
    #: Clients, endpoints and client×endpoint pairs tracked at most (least recently seen dropped).
    max_keys: int = 100_000
    #: Bytes of a request body the signature detectors read at most.
    max_body_bytes: int = 65_536
    #: Signature detectors that run (see `SIGNATURES`).
    signatures: tuple[str, ...] = SIGNATURES

    def __post_init__(self) -> None:
        positive = (
            "window_seconds",
            "baseline_half_life_seconds",
            "rate_factor",
            "status_burst_factor",
            "rate_min_requests",
            "status_burst_min",
            "hammer_min_requests",
            "max_keys",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{_flag(name)} must be above 0, got {getattr(self, name)!r}")
        for name in (
            "warmup_seconds",
            "new_client_seconds",
            "cooldown_seconds",
            "lateness_seconds",
            "max_body_bytes",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{_flag(name)} must not be negative, got {getattr(self, name)!r}"
                )
        if not 0 < self.hammer_share <= 1:
            raise ConfigError(f"hammer-share must be in (0, 1], got {self.hammer_share!r}")
        if self.window_seconds < 1:
            raise ConfigError(f"window-seconds must be at least 1, got {self.window_seconds!r}")
        unknown = sorted(set(self.signatures) - set(SIGNATURES))
        if unknown:
            raise ConfigError(
                f"unknown signature detector {unknown[0]!r} (use {', '.join(SIGNATURES)})"
            )

    def with_overrides(self, values: Mapping[str, Any]) -> Thresholds:
        """A copy with `values` (field name → value; None left out) applied."""
        given = {k: v for k, v in values.items() if v is not None}
        return replace(self, **given)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def threshold_names() -> list[tuple[str, object]]:
    """(name as written, default) of every numeric threshold, for help texts."""
    return [(_flag(f.name), f.default) for f in fields(Thresholds) if f.name != "signatures"]


def apply_items(items: Iterable[str], base: Thresholds) -> Thresholds:
    """`base` with `NAME=VALUE` items applied (`--threshold`); `ConfigError` if bad."""
    import yaml

    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"{item!r}: expected NAME=VALUE")
        if name not in _TYPES:
            raise ConfigError(f"unknown threshold {key.strip()!r} (see `trafficmirror monitor -h`)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        values[name] = _coerce("--threshold", key.strip(), name, value)
    return base.with_overrides(values)


#: Field name -> its annotation (a string: annotations are postponed in this module).
_TYPES: dict[str, object] = {f.name: f.type for f in fields(Thresholds)}


def load_rules(path: str, base: Thresholds | None = None) -> Thresholds:
    """Thresholds from a YAML rules file (a mapping of field names); `ConfigError` if bad."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read rules file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of threshold names to values")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in _TYPES:
            raise ConfigError(f"{path}: unknown threshold {key!r} (see `trafficmirror monitor -h`)")
        values[name] = _coerce(path, key, name, value)
    try:
        return (base or Thresholds()).with_overrides(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _coerce(path: str, key: object, name: str, value: Any) -> Any:
    kind = _TYPES[name]
    if name == "signatures":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {key} must be a list of detector names")
        return tuple(value)
    if kind in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {key} must be a whole number, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: {key} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class MonitorConfig:
    """One monitor process: where to read, how to name clients, what to alert on."""

    settings: KafkaSettings
    topic: str
    group: str
    group_protocol: str = "consumer"
    #: Where a new group starts: `latest` (only traffic from now on) or `earliest`.
    start: str = "latest"
    #: Header whose value names the client (HMAC-ed); the client address when absent.
    client_header: str | None = None
    #: Key of that HMAC; random per process when not given (ids then differ between members).
    client_key: bytes | None = None
    #: Explicit endpoint patterns (`GET /articles/{slug}`), tried before the heuristics.
    routes: tuple[str, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    schema_registry_url: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    #: Names this process in its alerts; host:pid when None.
    monitor_id: str | None = None
