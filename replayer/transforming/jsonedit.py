"""`json_set` and `json_delete`: the JSON rules' edits of a parsed document.

A JSON rule names its target with a `JsonPattern` (`$.user.email`,
`$.items[*].price`, `$..card`). Setting changes every value the pattern
matches and, when the pattern is a concrete path that matches nothing, adds
the missing key (and missing objects above it); deleting removes every match,
deepest first so no deletion moves a value another still has to find. Both
edit the document in place and say whether it changed, so the rule can leave
an unchanged body byte for byte as recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trafficmirror.plumbing.jsonpath import ANY, DEEP, JsonPattern, Segment


def _walk(node: Any, path: list[Segment]) -> Iterator[tuple[list[Segment], Any]]:
    """Every (path, value) of a JSON document, the document itself first."""
    yield path, node
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _walk(child, [*path, key])
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _walk(child, [*path, index])


def _matches(document: Any, pattern: JsonPattern) -> list[list[Segment]]:
    return [list(path) for path, _ in _walk(document, []) if path and pattern.matches(path)]


def _concrete(pattern: JsonPattern) -> list[Segment] | None:
    """The pattern's path when it has no `*` or `..`, else None."""
    if any(token is DEEP or token is ANY for token in pattern.tokens):
        return None
    return [token for token in pattern.tokens if isinstance(token, str | int)]


def json_set(document: Any, pattern: JsonPattern, value: Any) -> tuple[Any, bool]:
    """Set every value `pattern` matches to `value`; a concrete path adds a missing key
    (and missing objects above it). Returns the document and whether it changed."""
    paths = _matches(document, pattern)
    if not paths:
        path = _concrete(pattern)
        if not path:
            return document, False
        node = document
        for segment in path[:-1]:
            if isinstance(segment, str) and isinstance(node, dict):
                node = node.setdefault(segment, {})
            elif isinstance(segment, int) and isinstance(node, list) and segment < len(node):
                node = node[segment]
            else:
                return document, False
        last = path[-1]
        if isinstance(last, str) and isinstance(node, dict):
            node[last] = value
            return document, True
        return document, False
    changed = False
    for path in paths:
        try:  # a path below one already set is gone
            parent = _get(document, path[:-1])
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        if current != value:
            parent[path[-1]] = value
            changed = True
    return document, changed


def json_delete(document: Any, pattern: JsonPattern) -> tuple[Any, bool]:
    """Delete every value `pattern` matches. Returns the document and whether it changed."""
    paths = _matches(document, pattern)
    if not paths:
        return document, False
    # Deepest first, and the higher index first within one array, so no deletion
    # moves a value another one still has to find.
    paths.sort(key=lambda p: (len(p), [(0, s) if isinstance(s, int) else (1, s) for s in p]))
    for path in reversed(paths):
        parent = _get(document, path[:-1])
        del parent[path[-1]]
    return document, True


def _get(document: Any, path: list[Segment]) -> Any:
    node = document
    for segment in path:
        node = node[segment]
    return node
