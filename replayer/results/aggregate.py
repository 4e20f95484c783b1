"""Per-endpoint statistics over replay results, counted once per exchange.

`Aggregate` folds `ReplayResult` records (as `replayer.results.build` makes
them and the report reads them back) into `EndpointStats`: outcomes, mismatch
kinds, the most frequent difference paths, latencies, transforms. Delivery is
at least once, so the same exchange can be replayed, and its result written,
more than once. The aggregate keeps one result per `(run_id, id)`, and **the
last one added wins**: its earlier contribution is taken back. Results are
keyed by exchange id, so all results of one exchange land in one partition and
reading it in offset order makes "last" the newest replay. That is also what
log compaction of `<topic>.results` would keep.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from replayer.comparing.responses import MIRROR_CAPTURE
from schemas.records import ReplayResult

_INDEX = re.compile(r"\[\d+\]")


def aggregate_path(kind: str, path: str) -> str:
    """A difference path with array indexes generalised, to count paths across results.

    JSON paths, and the message paths of gRPC calls and WebSocket sessions (`messages[3]...`).
    """
    if kind in ("body_json", "message") or path.startswith("messages"):
        return _INDEX.sub("[*]", path)
    return path


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) with linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class _Entry:
    """What one result contributes to the aggregate."""

    endpoint: str
    outcome: str
    kinds: tuple[str, ...]
    noise_only: bool
    vs_baseline: bool
    production_us: int | None
    shadow_us: int | None
    paths: tuple[tuple[str, str], ...]
    transforms: tuple[str, ...] = ()


@dataclass
class EndpointStats:
    """Counts and latencies of one endpoint (or of all, for the total)."""

    endpoint: str
    requests: int = 0
    matches: int = 0
    mismatches: int = 0
    errors: int = 0
    skipped: int = 0
    #: Sent and answered, nothing to compare with: mirror captures without a baseline.
    unverified: int = 0
    #: Compared results (match or mismatch) whose reference was the baseline: mirror captures.
    vs_baseline: int = 0
    noise_only: int = 0
    mismatch_by_kind: Counter[str] = field(default_factory=Counter)
    paths: Counter[tuple[str, str]] = field(default_factory=Counter)
    production_us: list[int] = field(default_factory=list)
    shadow_us: list[int] = field(default_factory=list)
    #: Requests each transform (by name) changed.
    transforms: Counter[str] = field(default_factory=Counter)

    @property
    def compared(self) -> int:
        """Results with a comparison (match or mismatch)."""
        return self.matches + self.mismatches

    def mismatch_rate(self, kind: str | None = None) -> float:
        """Share of compared results that mismatch (in `kind`, if given); 0 if none compared."""
        if not self.compared:
            return 0.0
        count = self.mismatches if kind is None else self.mismatch_by_kind[kind]
        return count / self.compared

    def latency_ms(self, side: str, q: float) -> float | None:
        """Percentile `q` of `production` or `shadow` latency in milliseconds."""
        values = self.production_us if side == "production" else self.shadow_us
        value = percentile(values, q)
        return None if value is None else value / 1000

    def top_paths(self, n: int = 5) -> list[tuple[str, str, int]]:
        """The `n` most frequent (kind, path, count) of differences that are not noise."""
        return [(kind, path, count) for (kind, path), count in self.paths.most_common(n)]

    def _add(self, entry: _Entry) -> None:
        self.requests += 1
        if entry.outcome == "match":
            self.matches += 1
            self.noise_only += entry.noise_only
        elif entry.outcome == "mismatch":
            self.mismatches += 1
        elif entry.outcome == "error":
            self.errors += 1
        elif entry.outcome == "unverified":
            self.unverified += 1
        else:
            self.skipped += 1
        self.vs_baseline += entry.vs_baseline
        self.mismatch_by_kind.update(entry.kinds)
        self.paths.update(entry.paths)
        self.transforms.update(entry.transforms)
        if entry.production_us is not None:
            self.production_us.append(entry.production_us)
        if entry.shadow_us is not None:
            self.shadow_us.append(entry.shadow_us)


class Aggregate:
    """Per-endpoint statistics over results, one result per exchange and run.

    Adding a result whose `(run_id, id)` was already added replaces the earlier
    one (last wins; see the module doc), so replays delivered twice are counted
    once. Keeps a few mismatching results per endpoint as examples.
    """

    def __init__(self, examples_per_endpoint: int = 3) -> None:
        self.examples_per_endpoint = examples_per_endpoint
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._examples: dict[str, dict[tuple[str, str], ReplayResult]] = {}
        #: Results that replaced an earlier result of the same exchange and run.
        self.duplicates = 0
        #: Run ids seen, with their number of distinct results.
        self.runs: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, result: ReplayResult) -> bool:
        """Fold in one result; False if it replaced an earlier one of the same exchange."""
        key = (result["run_id"], result["id"])
        previous = self._entries.get(key)
        if previous is not None:
            self.duplicates += 1
            self._examples.get(previous.endpoint, {}).pop(key, None)
        else:
            self.runs[key[0]] += 1
        diffs = result["differences"]
        entry = _Entry(
            endpoint=result["endpoint"],
            outcome=result["outcome"],
            kinds=tuple(result["mismatch_kinds"]),
            noise_only=result["outcome"] == "match" and result["noise_count"] > 0,
            vs_baseline=result["capture"] == MIRROR_CAPTURE
            and result["outcome"] in ("match", "mismatch"),
            production_us=result["production_latency_us"],
            shadow_us=result["shadow_latency_us"],
            paths=tuple(
                {(d["kind"], aggregate_path(d["kind"], d["path"])) for d in diffs if not d["noise"]}
            ),
            transforms=tuple(dict.fromkeys(result["transforms"])),
        )
        self._entries[key] = entry
        if entry.outcome == "mismatch":
            examples = self._examples.setdefault(entry.endpoint, {})
            if len(examples) < self.examples_per_endpoint:
                examples[key] = result
        return previous is None

    def add_all(self, results: Iterable[ReplayResult]) -> Aggregate:
        """Add every result, in order; returns self."""
        for result in results:
            self.add(result)
        return self

    def endpoints(self) -> list[EndpointStats]:
        """Statistics per endpoint, highest mismatch rate first, then most requests."""
        stats: dict[str, EndpointStats] = {}
        for entry in self._entries.values():
            if entry.endpoint not in stats:
                stats[entry.endpoint] = EndpointStats(entry.endpoint)
            stats[entry.endpoint]._add(entry)
        return sorted(stats.values(), key=lambda s: (-s.mismatch_rate(), -s.requests, s.endpoint))

    def total(self) -> EndpointStats:
        """Statistics over every endpoint."""
        stats = EndpointStats("all endpoints")
        for entry in self._entries.values():
            stats._add(entry)
        return stats

    def examples(self) -> dict[str, list[ReplayResult]]:
        """A few mismatching results per endpoint that has any."""
        return {
            endpoint: list(found.values()) for endpoint, found in self._examples.items() if found
        }
