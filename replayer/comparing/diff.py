"""Structural differences: the `Difference` record, JSON trees and text lines.

Pure functions over already decoded values; `replayer.comparing.responses` decides which
of them applies to a pair of responses. See `diff_json` for the JSON rules.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from replayer.comparing.mapped import MappedValues
from replayer.comparing.noise import Rules, Segment, format_path
from schemas.records import DifferenceRecord

Kind = Literal["status", "header", "body_json", "body_text", "body_binary", "message"]
#: Every difference kind, in the order reports show them. `message`: a message of a
#: gRPC call (`replayer.comparing.grpc`) or of a WebSocket session
#: (`replayer.comparing.websocket`): its count, type, one of its fields, the close.
KINDS: tuple[Kind, ...] = ("status", "header", "body_json", "body_text", "body_binary", "message")

#: Display values are cut to this many characters.
VALUE_LIMIT = 200
#: At most this many differences per body (a rewritten array must not yield thousands).
MAX_BODY_DIFFERENCES = 100
#: At most this many changed line ranges are reported for a text body.
MAX_TEXT_HUNKS = 10
#: Arrays longer than this are aligned with difflib's autojunk heuristic (fast, rougher).
_ALIGN_LIMIT = 1000
#: Unmatched array elements are paired by similarity up to this many candidate pairs.
_PAIRING_LIMIT = 4096


@dataclass(frozen=True)
class Difference:
    """One way the shadow's response differs from production's.

    `path` is `status`, a lowercase header name, a JSON path (`$.items[3].price`),
    `line N` for text, or `body` for binary; for gRPC `grpc-status`,
    `grpc-message`, `trailers.NAME`, `messages.count` or `messages[0].user.name`.
    `production`/`shadow` are short display values, None where the value is
    absent. `noise` marks differences the rules or the baseline say do not matter.
    """

    kind: Kind
    path: str
    production: str | None
    shadow: str | None
    noise: bool = False

    def to_record(self) -> DifferenceRecord:
        """The `Difference` record of the `replay_result` schema."""
        return {
            "kind": self.kind,
            "path": self.path,
            "production": self.production,
            "shadow": self.shadow,
            "noise": self.noise,
        }


def short(text: str, limit: int = VALUE_LIMIT) -> str:
    """`text` cut to `limit` characters, with an ellipsis if it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_json(value: Any) -> str:
    """A JSON value as compact display text, shortened."""
    return short(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


# -- text ---------------------------------------------------------------------------


def diff_text(a: str, b: str, max_hunks: int = MAX_TEXT_HUNKS) -> list[Difference]:
    """The first `max_hunks` changed line ranges, as `line N` (production's line number)."""
    lines_a, lines_b = a.split("\n"), b.split("\n")
    # autojunk speeds up big inputs but misaligns small ones; only big ones need it.
    big = len(lines_a) + len(lines_b) > 5000
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=big)
    out: list[Difference] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if len(out) >= max_hunks:
            break
        path = f"line {i1 + 1}" if i2 - i1 <= 1 else f"line {i1 + 1}-{i2}"
        prod = short("\n".join(lines_a[i1:i2])) if i2 > i1 else None
        shad = short("\n".join(lines_b[j1:j2])) if j2 > j1 else None
        out.append(Difference("body_text", path, prod, shad))
    return out


# -- JSON ---------------------------------------------------------------------------


@dataclass
class _Walk:
    rules: Rules
    limit: int
    mapped: MappedValues | None = None
    out: list[Difference] = field(default_factory=list)

    def full(self) -> bool:
        return len(self.out) >= self.limit

    def add(
        self, path: Sequence[Segment], a: Any, b: Any, absent: str = "", noise: bool = False
    ) -> None:
        prod = None if absent == "a" else show_json(a)
        shad = None if absent == "b" else show_json(b)
        self.out.append(Difference("body_json", format_path(path), prod, shad, noise))


def diff_json(
    a: Any,
    b: Any,
    rules: Rules | None = None,
    limit: int = MAX_BODY_DIFFERENCES,
    mapped: MappedValues | None = None,
) -> list[Difference]:
    """Structural differences between two parsed JSON documents.

    Removed values have `shadow=None`, added ones `production=None`. A subtree an
    ignore pattern matches yields at most one difference, marked noise, at its
    root. Numbers compare within the rules' tolerance; `true` and `1` differ.
    Scalars that differ only by `mapped` values (correlated IDs) are equal.
    """
    walk = _Walk(rules or Rules(), limit, mapped or None)
    _walk(walk, a, b, [], check_ignore=True)
    return walk.out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _walk(w: _Walk, a: Any, b: Any, path: list[Segment], check_ignore: bool) -> None:
    if w.full():
        return
    if check_ignore and w.rules.ignore_paths and any(p.matches(path) for p in w.rules.ignore_paths):
        probe = _Walk(w.rules, 1, w.mapped)
        _walk(probe, a, b, path, check_ignore=False)
        if probe.out:
            w.add(path, a, b, noise=True)
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key, value in a.items():
            if key in b:
                _walk(w, value, b[key], [*path, key], check_ignore)
            elif not w.full():
                _removed_or_added(w, [*path, key], value, "b", check_ignore)
        for key, value in b.items():
            if key not in a and not w.full():
                _removed_or_added(w, [*path, key], value, "a", check_ignore)
    elif isinstance(a, list) and isinstance(b, list):
        if w.rules.unordered(path):
            _walk_unordered(w, a, b, path, check_ignore)
        else:
            _walk_ordered(w, a, b, path, check_ignore)
    elif _is_number(a) and _is_number(b):
        if not w.rules.numbers_equal(a, b) and not (w.mapped and w.mapped.same(a, b)):
            w.add(path, a, b)
    elif (type(a) is not type(b) or a != b) and not (w.mapped and w.mapped.same(a, b)):
        w.add(path, a, b)


def _removed_or_added(w: _Walk, path: list[Segment], value: Any, absent: str, check: bool) -> None:
    # Ancestors were checked on the way down; only the value's own path is left.
    noise = check and any(p.matches(path) for p in w.rules.ignore_paths)
    w.add(path, value, value, absent=absent, noise=noise)


def _integral(value: Any) -> Any:
    """`value` with integral floats as ints, so 1.0 and 1 get the same canonical text."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _canon(value: Any) -> str:
    """A canonical text of a JSON value for matching equal array elements."""
    return json.dumps(_integral(value), sort_keys=True, separators=(",", ":"))


def _walk_ordered(w: _Walk, a: list[Any], b: list[Any], path: list[Segment], check: bool) -> None:
    # Align first, so one inserted element reads as one addition, not a shifted tail.
    # Big arrays let difflib skip very frequent elements (autojunk) to stay fast.
    matcher = difflib.SequenceMatcher(
        None, [_canon(x) for x in a], [_canon(x) for x in b], autojunk=len(a) > _ALIGN_LIMIT
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            _diff_leftovers(w, a, b, list(range(i1, i2)), list(range(j1, j2)), path, check)
            if w.full():
                return


def _walk_unordered(w: _Walk, a: list[Any], b: list[Any], path: list[Segment], check: bool) -> None:
    keys_a = [_canon(x) for x in a]
    keys_b = [_canon(x) for x in b]
    available: dict[str, list[int]] = {}
    for j, key in enumerate(keys_b):
        available.setdefault(key, []).append(j)
    left_a = []
    for i, key in enumerate(keys_a):
        slots = available.get(key)
        if slots:
            slots.pop()
        else:
            left_a.append(i)
    left_b = sorted(j for slots in available.values() for j in slots)
    _diff_leftovers(w, a, b, left_a, left_b, path, check)


def _similarity(x: Any, y: Any) -> int:
    if isinstance(x, dict) and isinstance(y, dict):
        return sum(1 for k, v in x.items() if k in y and _canon(y[k]) == _canon(v))
    return 0


def _diff_leftovers(
    w: _Walk,
    a: list[Any],
    b: list[Any],
    left_a: list[int],
    left_b: list[int],
    path: list[Segment],
    check: bool,
) -> None:
    """Diff elements that found no equal partner: pair each with its most similar
    counterpart (objects sharing the most fields, e.g. the same id), so a changed
    element reads as a changed field, then the rest by position; what is left
    over is removed or added."""
    pairs: list[tuple[int, int]] = []
    if len(left_a) * len(left_b) <= _PAIRING_LIMIT and any(isinstance(a[i], dict) for i in left_a):
        free = list(left_b)
        rest = []
        for i in left_a:
            best = max(free, key=lambda j: _similarity(a[i], b[j]), default=None)
            if best is not None and _similarity(a[i], b[best]) > 0:
                pairs.append((i, best))
                free.remove(best)
            else:
                rest.append(i)
        left_a, left_b = rest, free
    # Whatever shares nothing is paired by position, as an edited element would be.
    n = min(len(left_a), len(left_b))
    pairs.extend(zip(left_a[:n], left_b[:n], strict=True))
    unpaired_a, unpaired_b = left_a[n:], left_b[n:]
    for i, j in pairs:
        _walk(w, a[i], b[j], [*path, i], check)
    for i in unpaired_a:
        if w.full():
            return
        _removed_or_added(w, [*path, i], a[i], "b", check)
    for j in unpaired_b:
        if w.full():
            return
        _removed_or_added(w, [*path, j], b[j], "a", check)
