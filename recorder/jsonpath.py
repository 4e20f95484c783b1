"""JSON path patterns for the recorder's body redaction rules.

`$` is the document; `.name`, `["name"]` and `[3]` step into an object key or
an array index; `*` (or `[*]`) is any one key or index; `..` is any number of
steps, so `$..secret` is a `secret` key at any depth. The same syntax as the
replayer's noise rules, kept apart because the recorder and the replayer never
import each other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from trafficmirror.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


class _Deep:
    def __repr__(self) -> str:
        return ".."


class _Any:
    def __repr__(self) -> str:
        return "*"


_DEEP = _Deep()
_ANY = _Any()
Token = str | int | _Deep | _Any
Segment = str | int


def parse(text: str) -> tuple[Token, ...]:
    """The tokens of pattern `text`; raises `ConfigError` if it is not a valid pattern."""
    return tuple(_tokenize(text))


def matches(tokens: Sequence[Token], path: Sequence[Segment]) -> bool:
    """True if the pattern matches exactly this concrete path (keys and indexes)."""
    return _match(tokens, 0, path, 0)


def _tokenize(text: str) -> list[Token]:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"bad JSON path {text!r}: {why}")

    if not text.startswith("$"):
        raise bad("it must start with $")
    tokens: list[Token] = []
    i, n = 1, len(text)
    while i < n:
        if text.startswith("..", i):
            tokens.append(_DEEP)
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
                tokens.append(_ANY)
            elif inner.isdigit():
                tokens.append(int(inner))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                tokens.append(inner[1:-1])
            else:
                raise bad(f"expected [N], [*] or ['key'], got [{inner}]")
            i = end + 1
        else:
            raise bad(f"unexpected {text[i]!r} at position {i}")
    if not tokens:
        raise bad("it names the whole body (use a path below $)")
    if tokens[-1] is _DEEP:
        raise bad("it must not end with ..")
    return tokens


def _name_step(text: str, i: int, tokens: list[Token], bad: Any) -> int:
    if text.startswith("*", i):
        tokens.append(_ANY)
        return i + 1
    match = _NAME_RE.match(text, i)
    if not match:
        raise bad(f"expected a key name or * at position {i}")
    tokens.append(match.group())
    return match.end()


def _match(tokens: Sequence[Token], i: int, path: Sequence[Segment], j: int) -> bool:
    if i == len(tokens):
        return j == len(path)
    token = tokens[i]
    if token is _DEEP:
        return any(_match(tokens, i + 1, path, k) for k in range(j, len(path) + 1))
    if j == len(path):
        return False
    segment = path[j]
    if token is _ANY:
        ok = True
    elif isinstance(token, int):
        ok = isinstance(segment, int) and segment == token
    else:
        ok = isinstance(segment, str) and segment == token
    return ok and _match(tokens, i + 1, path, j + 1)
