"""Value pairs a comparison treats as equal: the IDs value correlation mapped.

When the replayer's value correlation learned that the shadow's order 903 is
production's order 17 (`replayer.transforming.correlation`), production
answering `{"id": 17}` where the shadow answers `{"id": 903}` is not a
regression. `MappedValues` holds those (production, shadow) pairs for one
exchange, as text: a JSON string is its text, a JSON number its JSON text
(`17`, `2.5`), the form correlation learns them in. A JSON scalar pair in the
set is equal; so is a string, header value or text body that becomes the
shadow's once each production value standing in it as a whole token (between
characters other than letters, digits, `_`, `-` and `.`: `/orders/17`,
`id=17`) is replaced by its shadow value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

_WORD_CHARS = r"A-Za-z0-9_.\-"


class MappedValues:
    """(production, shadow) pairs known to name the same thing; see the module docstring."""

    __slots__ = ("_by_production", "_pairs", "_pattern", "_raw")

    def __init__(self, pairs: Collection[tuple[str, str]]) -> None:
        # Built for every compared exchange of a connection with correlated IDs, and
        # mostly not needed (equal bodies are equal): the work waits for the first use.
        self._raw = pairs
        self._pairs: frozenset[tuple[str, str]] | None = None
        self._by_production: dict[str, str] | None = None
        self._pattern: re.Pattern[str] | None = None

    @property
    def pairs(self) -> frozenset[tuple[str, str]]:
        """The pairs that map something: a production value to a different shadow value."""
        if self._pairs is None:
            self._pairs = frozenset((a, b) for a, b in self._raw if a and a != b)
        return self._pairs

    @property
    def by_production(self) -> dict[str, str]:
        """Production value → the shadow's (one, if a value had several)."""
        if self._by_production is None:
            by_production: dict[str, str] = {}
            for production, shadow in sorted(self.pairs):
                by_production.setdefault(production, shadow)
            self._by_production = by_production
        return self._by_production

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            # Longest first, so `170` is not read as `17` and a `0`.
            values = sorted(self.by_production, key=len, reverse=True)
            alternatives = "|".join(re.escape(v) for v in values)
            self._pattern = re.compile(f"(?<![{_WORD_CHARS}])(?:{alternatives})(?![{_WORD_CHARS}])")
        return self._pattern

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def translate(self, text: str) -> str:
        """`text` with each production value standing in it as a whole token made the shadow's."""
        by_production = self.by_production
        if not by_production:
            return text
        return self._compiled().sub(lambda m: by_production[m.group()], text)

    def same(self, production: Any, shadow: Any) -> bool:
        """True when two JSON scalars differ only by mapped values."""
        a, b = scalar_text(production), scalar_text(shadow)
        if a is None or b is None:
            return False
        if (a, b) in self.pairs:
            return True
        return isinstance(production, str) and isinstance(shadow, str) and self.translate(a) == b


def scalar_text(value: Any) -> str | None:
    """The text of a JSON string or number as correlation learns it; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return None
