"""JSON paths: concrete paths of values in a JSON document, and patterns over them.

A concrete path is a list of segments (object keys and array indexes) and is
shown as `$.user.name`, `$.items[3].price` or `$["a b"]`.

A pattern: `$` is the document; `.name`, `["name"]` and `[3]` step into an
object key or an array index; `*` (or `[*]`) is any one key or index; `..` is
any number of steps, so `$..timestamp` is a `timestamp` key at any depth.

Shared plumbing: the replayer's noise rules and the recorder's redaction rules
use the same syntax, and neither side may import the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trafficmirror.plumbing.errors import ConfigError

#: One step in a concrete JSON path: an object key or an array index.
Segment = str | int

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


class _Deep:
    """The `..` step of a pattern: any number (zero or more) of segments."""

    def __repr__(self) -> str:
        return ".."


class _Any:
    """The `*` step of a pattern: exactly one key or index."""

    def __repr__(self) -> str:
        return "*"


DEEP = _Deep()
ANY = _Any()
_Token = str | int | _Deep | _Any


@dataclass(frozen=True)
class JsonPattern:
    """A parsed JSON path pattern such as `$.items[*].price` or `$..timestamp`."""

    text: str
    tokens: tuple[_Token, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPattern:
        """Parse `text`; raises `ConfigError` if it is not a valid pattern."""
        return cls(text, tuple(_tokenize(text)))

    def matches(self, path: Sequence[Segment]) -> bool:
        """True if the pattern matches exactly this concrete path."""
        return _match(self.tokens, 0, path, 0)

    def __str__(self) -> str:
        return self.text


def _tokenize(text: str) -> list[_Token]:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"bad JSON path pattern {text!r}: {why}")

    if not text.startswith("$"):
        raise bad("it must start with $")
    tokens: list[_Token] = []
    i, n = 1, len(text)
    while i < n:
        if text.startswith("..", i):
            tokens.append(DEEP)
            i += 2
            if i < n and text[i] == "[":
                continue
            i = _name_step(text, i, tokens, bad)
        elif text[i] == ".":
            i = _name_step(text, i + 1, tokens, bad)
        elif text[i] == "[":
            end = text.find("]", i)
            if end < 0:
                raise bad("unclosed [")
            inner = text[i + 1 : end].strip()
            if inner == "*":
                tokens.append(ANY)
            elif inner.isdigit():
                tokens.append(int(inner))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                tokens.append(inner[1:-1])
            else:
                raise bad(f"expected [N], [*] or ['key'], got [{inner}]")
            i = end + 1
        else:
            raise bad(f"unexpected {text[i]!r} at position {i}")
    if tokens and tokens[-1] is DEEP:
        raise bad("it must not end with ..")
    return tokens


def _name_step(text: str, i: int, tokens: list[_Token], bad: Any) -> int:
    if text.startswith("*", i):
        tokens.append(ANY)
        return i + 1
    match = _NAME_RE.match(text, i)
    if not match:
        raise bad(f"expected a key name or * at position {i}")
    tokens.append(match.group())
    return match.end()


def _match(tokens: Sequence[_Token], i: int, path: Sequence[Segment], j: int) -> bool:
    if i == len(tokens):
        return j == len(path)
    token = tokens[i]
    if token is DEEP:
        return any(_match(tokens, i + 1, path, k) for k in range(j, len(path) + 1))
    if j == len(path):
        return False
    segment = path[j]
    if token is ANY:
        ok = True
    elif isinstance(token, int):
        ok = isinstance(segment, int) and segment == token
    else:
        ok = isinstance(segment, str) and segment == token
    return ok and _match(tokens, i + 1, path, j + 1)


def format_path(path: Sequence[Segment]) -> str:
    """A concrete path as text: `$.user.name`, `$.items[3].price`, `$["a b"]`."""
    parts = ["$"]
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _NAME_RE.fullmatch(segment):
            parts.append(f".{segment}")
        else:
            parts.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return "".join(parts)
