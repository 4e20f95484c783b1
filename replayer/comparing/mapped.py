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

    __slots__ = ("_by_production", "_pattern", "pairs")

    def __init__(self, pairs: Collection[tuple[str, str]]) -> None:
        self.pairs = frozenset((a, b) for a, b in pairs if a and a != b)
        by_production: dict[str, str] = {}
        for production, shadow in sorted(self.pairs):
            by_production.setdefault(production, shadow)  # one translation per value
        self._by_production = by_production
        self._pattern: re.Pattern[str] | None = None  # compiled when first needed

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            # Longest first, so `170` is not read as `17` and a `0`.
            values = sorted(self._by_production, key=len, reverse=True)
            alternatives = "|".join(re.escape(v) for v in values)
            self._pattern = re.compile(f"(?<![{_WORD_CHARS}])(?:{alternatives})(?![{_WORD_CHARS}])")
        return self._pattern

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def translate(self, text: str) -> str:
        """`text` with each production value standing in it as a whole token made the shadow's."""
        if not self._by_production:
            return text
        return self._compiled().sub(lambda m: self._by_production[m.group()], text)

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
