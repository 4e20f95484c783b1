"""Keep at most a cap of each response body; count and hash the rest as it streams past.

A shadow may answer with a body of any size, and a replay must not hold it:
`BodyCollector` keeps the first `cap` bytes of one body for the comparison,
and past that only counts the bytes and feeds them to a SHA-256 of the whole
body, so a 1 GB answer costs the replayer one cap of memory. The bytes kept
at once across every response being read are bounded too: each collector
takes what it keeps from one shared `BodyBudget` and gives it back when the
body is complete; a body that finds the budget spent keeps less than its cap
(and is flagged truncated like one over it). A collector's `result()` says
what was kept, the whole length, whether it was truncated and the hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Default of `--max-response-bytes`: the most of one response body kept for comparison.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: Response bodies kept at once across all requests in flight, in caps.
RESPONSE_BUDGET_CAPS = 16


class BodyBudget:
    """Bytes of response bodies that may be held at once, shared by the transports."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("a body budget holds at least one byte")
        self.total = total
        self.available = total

    @classmethod
    def for_cap(cls, cap: int) -> BodyBudget:
        """A budget of `RESPONSE_BUDGET_CAPS` caps."""
        return cls(cap * RESPONSE_BUDGET_CAPS)

    def take(self, wanted: int) -> int:
        """Up to `wanted` bytes of the budget: what is left of it, at most."""
        granted = min(wanted, self.available)
        self.available -= granted
        return granted

    def give(self, amount: int) -> None:
        """Return `amount` bytes taken before."""
        self.available = min(self.available + amount, self.total)


@dataclass(slots=True)
class CollectedBody:
    """A body as kept: `body` (all of it unless `truncated`), its whole `length`,
    and with `truncated` the SHA-256 (hex) of the whole body."""

    body: bytes
    length: int
    truncated: bool = False
    sha256: str | None = None


class BodyCollector:
    """One response body as it arrives: the first `cap` bytes (within `budget`) kept."""

    __slots__ = ("_budget", "_cap", "_hash", "_kept", "_length", "_parts", "_taken")

    def __init__(self, cap: int, budget: BodyBudget | None = None) -> None:
        self._cap = cap
        self._budget = budget
        self._parts: list[bytes] = []
        self._kept = 0
        self._taken = 0  # bytes of the budget this body holds
        self._length = 0
        self._hash: hashlib._Hash | None = None

    def feed(self, data: bytes) -> None:
        """The next bytes of the body."""
        if not data:
            return
        self._length += len(data)
        digest = self._hash
        if digest is not None:  # already truncated: count and hash only
            digest.update(data)
            return
        room = self._cap - self._kept
        budget = self._budget
        if budget is not None:
            granted = budget.take(min(len(data), room))
            self._taken += granted
            room = granted
        if len(data) <= room:
            self._parts.append(data)
            self._kept += len(data)
            return
        if room > 0:
            self._parts.append(data[:room])
            self._kept += room
        digest = self._hash = hashlib.sha256()
        for part in self._parts:
            digest.update(part)
        digest.update(data[room:])

    def result(self) -> CollectedBody:
        """What was kept; gives the budget back (call once, when the body is complete)."""
        self.release()
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._hash is None:
            return CollectedBody(body, self._length)
        return CollectedBody(body, self._length, True, self._hash.hexdigest())

    def release(self) -> None:
        """Give the budget back (the body is complete, or the response failed)."""
        if self._budget is not None and self._taken:
            self._budget.give(self._taken)
            self._taken = 0
