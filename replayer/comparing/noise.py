"""Noise rules: what a comparison of production and shadow responses should not count.

A shadow that works correctly still answers differently from production in
places that do not matter: timestamps, generated ids, floating point rounding,
the order of a set serialised as a JSON array. `Rules` says which of those to
ignore or normalise. They come from a rules file (JSON or TOML, stdlib parsers
only; `load_rules` shows the layout) and from CLI-style strings, and merge in
that order. JSON path patterns (`trafficmirror.plumbing.jsonpath`): `$.meta` is
the `meta` key of the body, `*` any one key or index, `..` any number of steps;
a pattern ignores the value it matches and everything below it. Every
validation failure raises `ConfigError` with one line naming the culprit.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.jsonpath import JsonPattern, Segment, format_path

#: Response headers that differ between any two healthy instances, or that the
#: body comparison already covers; they are not compared at all. `compare_headers`
#: takes names out of this list, `ignore_headers` adds to it (as noise).
DEFAULT_IGNORED_HEADERS: tuple[str, ...] = (
    # time of the response, caching metadata derived from it
    "date",
    "age",
    "expires",
    "last-modified",
    "etag",
    # per-instance or per-request identity
    "server",
    "set-cookie",
    "x-request-id",
    "request-id",
    "x-correlation-id",
    "x-trace-id",
    "traceparent",
    "tracestate",
    "x-amzn-trace-id",
    "x-b3-*",
    "x-cloud-trace-context",
    "server-timing",
    "x-runtime",
    "x-response-time",
    "via",
    "x-served-by",
    "x-cache",
    "x-cache-hits",
    # framing: the body comparison covers the content, and re-serialised JSON
    # that is structurally equal has a different length
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
)

_KNOWN_KEYS = (
    "ignore_paths",
    "unordered_paths",
    "ignore_array_order",
    "ignore_headers",
    "compare_headers",
    "tolerance",
    "replace",
)


@dataclass(frozen=True)
class Replacement:
    """A regex substitution run over body text before it is compared (like `sed s///`)."""

    pattern: re.Pattern[str]
    replacement: str

    @classmethod
    def compile(cls, pattern: str, replacement: str) -> Replacement:
        """Compile and validate; raises `ConfigError` on a bad regex or group reference."""
        try:
            compiled = re.compile(pattern)
            # Parses the replacement template too, so a bad \\1 fails here, not mid-replay.
            compiled.sub(replacement, "")
        except re.error as exc:
            raise ConfigError(f"bad replacement {pattern!r} => {replacement!r}: {exc}") from None
        return cls(compiled, replacement)

    def apply(self, text: str) -> str:
        """`text` with every match replaced."""
        return self.pattern.sub(self.replacement, text)


#: Header names whose policy `Rules` remembers.
_POLICY_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Rules:
    """What to ignore or normalise when comparing a shadow response with production.

    Differences under `ignore_paths` and in `ignore_headers` are still reported,
    marked as noise, so a report can say how much was noise. Replacements,
    tolerance and array order normalise: what they cover is not a difference at
    all. Headers in the default ignore list (minus `compare_headers`) are not
    compared.
    """

    ignore_paths: tuple[JsonPattern, ...] = ()
    unordered_paths: tuple[JsonPattern, ...] = ()
    ignore_array_order: bool = False
    replacements: tuple[Replacement, ...] = ()
    abs_tolerance: float = 0.0
    rel_tolerance: float = 0.0
    ignore_headers: tuple[str, ...] = ()
    compare_headers: tuple[str, ...] = ()
    _skipped_headers: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # Per header name, the answer of `header_policy`: the glob matching costs
    # more than the rest of a comparison, and a replay sees few distinct names.
    _policies: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compare = {h.lower() for h in self.compare_headers}
        skipped = tuple(h for h in DEFAULT_IGNORED_HEADERS if h not in compare)
        object.__setattr__(self, "_skipped_headers", skipped)
        object.__setattr__(self, "_policies", {})

    def header_policy(self, name: str) -> str:
        """`skip` (not compared), `noise` (compared, marked noise) or `compare` for a header."""
        policy = self._policies.get(name)
        if policy is None:
            policy = self._header_policy(name)
            if len(self._policies) < _POLICY_CACHE_SIZE:  # bounded: names come from traffic
                self._policies[name] = policy
        return policy

    def _header_policy(self, name: str) -> str:
        lowered = name.lower()
        if lowered in self.compare_headers:
            return "compare"
        if any(fnmatch.fnmatchcase(lowered, p) for p in self.ignore_headers):
            return "noise"
        if any(fnmatch.fnmatchcase(lowered, p) for p in self._skipped_headers):
            return "skip"
        return "compare"

    def unordered(self, path: Sequence[Segment]) -> bool:
        """True if the array at `path` is compared without regard to order."""
        return self.ignore_array_order or any(p.matches(path) for p in self.unordered_paths)

    def numbers_equal(self, a: float, b: float) -> bool:
        """Equal within the absolute or relative tolerance (either suffices)."""
        if a == b:
            return True
        delta = abs(a - b)
        if delta <= self.abs_tolerance:
            return True
        return delta <= self.rel_tolerance * max(abs(a), abs(b))

    def normalise_text(self, text: str) -> str:
        """Body text with every replacement applied, in order."""
        for rep in self.replacements:
            text = rep.apply(text)
        return text

    def merged(self, other: Rules) -> Rules:
        """These rules plus `other`'s: lists concatenate, `other`'s tolerances win if set."""
        return Rules(
            ignore_paths=self.ignore_paths + other.ignore_paths,
            unordered_paths=self.unordered_paths + other.unordered_paths,
            ignore_array_order=self.ignore_array_order or other.ignore_array_order,
            replacements=self.replacements + other.replacements,
            abs_tolerance=other.abs_tolerance or self.abs_tolerance,
            rel_tolerance=other.rel_tolerance or self.rel_tolerance,
            ignore_headers=self.ignore_headers + other.ignore_headers,
            compare_headers=self.compare_headers + other.compare_headers,
        )

    def to_mapping(self) -> dict[str, Any]:
        """The rules as plain data in the rules-file layout (for the control topic, logs)."""
        return {
            "ignore_paths": [p.text for p in self.ignore_paths],
            "unordered_paths": [p.text for p in self.unordered_paths],
            "ignore_array_order": self.ignore_array_order,
            "ignore_headers": list(self.ignore_headers),
            "compare_headers": list(self.compare_headers),
            "tolerance": {"absolute": self.abs_tolerance, "relative": self.rel_tolerance},
            "replace": [
                {"pattern": r.pattern.pattern, "with": r.replacement} for r in self.replacements
            ],
        }


def rules_from_mapping(data: Any, origin: str = "rules") -> Rules:
    """Validate rules given as plain data (a parsed rules file); `origin` names it in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a table/object of rules")
    unknown = sorted(set(data) - set(_KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"{origin}: unknown key {unknown[0]!r} (known: {', '.join(_KNOWN_KEYS)})")

    def strings(key: str) -> list[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{origin}: {key} must be a list of strings")
        return value

    def patterns(key: str) -> tuple[JsonPattern, ...]:
        try:
            return tuple(JsonPattern.parse(p) for p in strings(key))
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {key}: {exc}") from None

    order = data.get("ignore_array_order", False)
    if not isinstance(order, bool):
        raise ConfigError(f"{origin}: ignore_array_order must be true or false")

    abs_tol = rel_tol = 0.0
    tolerance = data.get("tolerance", {})
    if isinstance(tolerance, Mapping):
        extra = sorted(set(tolerance) - {"absolute", "relative"})
        if extra:
            raise ConfigError(f"{origin}: tolerance has unknown key {extra[0]!r}")
        abs_tol = _non_negative(tolerance.get("absolute", 0.0), f"{origin}: tolerance.absolute")
        rel_tol = _non_negative(tolerance.get("relative", 0.0), f"{origin}: tolerance.relative")
    else:
        raise ConfigError(f"{origin}: tolerance must be a table with absolute and/or relative")

    replacements = []
    raw_replace = data.get("replace", [])
    if not isinstance(raw_replace, list):
        raise ConfigError(f"{origin}: replace must be a list of {{pattern, with}} tables")
    for number, item in enumerate(raw_replace, start=1):
        if (
            not isinstance(item, Mapping)
            or set(item) != {"pattern", "with"}
            or not all(isinstance(v, str) for v in item.values())
        ):
            raise ConfigError(
                f"{origin}: replace #{number} must have exactly the string keys pattern and with"
            )
        try:
            replacements.append(Replacement.compile(item["pattern"], item["with"]))
        except ConfigError as exc:
            raise ConfigError(f"{origin}: replace #{number}: {exc}") from None

    return Rules(
        ignore_paths=patterns("ignore_paths"),
        unordered_paths=patterns("unordered_paths"),
        ignore_array_order=order,
        replacements=tuple(replacements),
        abs_tolerance=abs_tol,
        rel_tolerance=rel_tol,
        ignore_headers=tuple(h.lower() for h in strings("ignore_headers")),
        compare_headers=tuple(h.lower() for h in strings("compare_headers")),
    )


def _non_negative(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{what} must be a number >= 0, got {value!r}")
    return float(value)


def load_rules(path: str | Path) -> Rules:
    """Read a rules file: `.toml` as TOML, anything else as JSON (the same keys).

    In TOML::

        ignore_paths = ["$.meta.*", "$.items[*].updated_at", "$..timestamp"]
        unordered_paths = ["$.tags"]        # arrays compared as multisets
        ignore_array_order = false          # true: every array
        ignore_headers = ["x-build-*"]      # on top of the default list
        compare_headers = ["server"]        # taken out of the default list
        tolerance = { absolute = 0.001, relative = 0.01 }

        [[replace]]                         # applied to body text before comparing
        pattern = '\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z'
        with = "<time>"
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read rules file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        # tomllib and json both raise ValueError subclasses; keep their first line only.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"rules file {path}: {first}") from None
    return rules_from_mapping(data, str(path))


def parse_tolerance(spec: str) -> tuple[float, float]:
    """`0.5` → (0.5 absolute, 0); `2%` → (0, 0.02 relative)."""
    text = spec.strip()
    relative = text.endswith("%")
    try:
        value = float(text[:-1] if relative else text)
    except ValueError:
        raise ConfigError(f"bad tolerance {spec!r}: expected a number or a percentage") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"bad tolerance {spec!r}: must be a finite number >= 0")
    return (0.0, value / 100) if relative else (value, 0.0)


def parse_replacement(spec: str) -> Replacement:
    """`PATTERN=>REPLACEMENT` (split at the first `=>`) → a compiled `Replacement`."""
    pattern, sep, repl = spec.partition("=>")
    if not sep or not pattern:
        raise ConfigError(f"bad replacement {spec!r}: expected REGEX=>REPLACEMENT")
    return Replacement.compile(pattern, repl)


def build_rules(
    rules_file: str | Path | None = None,
    *,
    ignore_paths: Iterable[str] = (),
    unordered_paths: Iterable[str] = (),
    ignore_array_order: bool = False,
    ignore_headers: Iterable[str] = (),
    compare_headers: Iterable[str] = (),
    replacements: Iterable[str] = (),
    tolerances: Iterable[str] = (),
) -> Rules:
    """Rules from an optional file plus CLI-style strings (which extend or override it).

    `replacements` take `REGEX=>REPLACEMENT`; `tolerances` take `0.01` (absolute)
    or `1%` (relative), once each at most.
    """
    base = load_rules(rules_file) if rules_file else Rules()
    abs_tol = rel_tol = 0.0
    for spec in tolerances:
        a, r = parse_tolerance(spec)
        abs_tol, rel_tol = abs_tol or a, rel_tol or r
    cli = Rules(
        ignore_paths=tuple(JsonPattern.parse(p) for p in ignore_paths),
        unordered_paths=tuple(JsonPattern.parse(p) for p in unordered_paths),
        ignore_array_order=ignore_array_order,
        replacements=tuple(parse_replacement(s) for s in replacements),
        abs_tolerance=abs_tol,
        rel_tolerance=rel_tol,
        ignore_headers=tuple(h.lower() for h in ignore_headers),
        compare_headers=tuple(h.lower() for h in compare_headers),
    )
    return base.merged(cli)


__all__ = [
    "DEFAULT_IGNORED_HEADERS",
    "JsonPattern",
    "Replacement",
    "Rules",
    "Segment",
    "build_rules",
    "format_path",
    "load_rules",
    "parse_replacement",
    "parse_tolerance",
    "rules_from_mapping",
]
