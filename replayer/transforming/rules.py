"""The rewrite rules as steps: headers, regex replace, JSON set and delete.

Each `Rule` of the config becomes a `RuleStep` whose `rewrite()` is plain
(not async: rules never wait), returning the request itself when the rule
changed nothing. A header rule replaces every occurrence of its header with
one (`set_header` adds it when absent) or removes them all; a regex rule
works on the path without the query, the query without the `?`, the values of
one header, or a text body (no Content-Encoding, valid UTF-8); a JSON rule on
a JSON body (no Content-Encoding), written back compactly. A body that is not
text or JSON is left alone by those rules. Content-Length is put right by the
chain (`replayer.transforming.chain`) once every step ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from replayer.models import OutgoingRequest, Skipped
from replayer.transforming.config import (
    JsonDelete,
    JsonSet,
    RemoveHeader,
    Replace,
    Rule,
    SetHeader,
    Value,
)
from replayer.transforming.step import TransformContext
from replayer.transforming.values import ValueReader
from trafficmirror.plumbing.jsonpath import ANY, DEEP, JsonPattern, Segment

_BAD_IN_VALUE = ("\r", "\n", "\x00")


def set_header(
    headers: tuple[tuple[str, str], ...], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    """`headers` with every `name` header replaced by one `name: value` (where the first
    was; appended when there was none)."""
    wanted = name.lower()
    out: list[tuple[str, str]] = []
    done = False
    for key, old in headers:
        if key.lower() == wanted:
            if not done:
                out.append((key, value))
                done = True
            continue
        out.append((key, old))
    if not done:
        out.append((name, value))
    return tuple(out)


def remove_header(headers: tuple[tuple[str, str], ...], name: str) -> tuple[tuple[str, str], ...]:
    """`headers` without any `name` header."""
    wanted = name.lower()
    return tuple((key, value) for key, value in headers if key.lower() != wanted)


def body_encoded(request: OutgoingRequest) -> bool:
    """True when the body carries a Content-Encoding other than identity (gzip ...)."""
    encoding = request.header("content-encoding")
    return encoding is not None and encoding.strip().lower() not in ("", "identity")


class RuleStep:
    """One rewrite rule as a step (see the module doc)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        action = rule.action
        self._reader: ValueReader | None = None
        if isinstance(action, SetHeader):
            self._reader = ValueReader(action.value)
        elif isinstance(action, JsonSet) and isinstance(action.value, Value):
            self._reader = ValueReader(action.value)

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        return self.rewrite(request, context)

    def rewrite(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """The changed request, or `request` itself when the rule changed nothing."""
        action = self.rule.action
        if isinstance(action, SetHeader):
            assert self._reader is not None  # noqa: S101 (set in __init__)
            value = self._reader.get()
            if any(c in value for c in _BAD_IN_VALUE):
                raise Skipped(
                    "transform", f"rule {self.name}: the header value holds CR, LF or NUL"
                )
            headers = set_header(request.headers, action.name, value)
            return request if headers == request.headers else replace(request, headers=headers)
        if isinstance(action, RemoveHeader):
            headers = remove_header(request.headers, action.name)
            if len(headers) == len(request.headers):
                return request
            return replace(request, headers=headers)
        if isinstance(action, Replace):
            return self._replace(action, request)
        if isinstance(action, JsonSet | JsonDelete):
            return self._json(action, request)
        raise AssertionError(f"unknown action {action!r}")  # pragma: no cover

    def _replace(self, action: Replace, request: OutgoingRequest) -> OutgoingRequest:
        pattern, replacement = action.pattern, action.replacement
        if action.where in ("path", "query"):
            path, sep, query = request.path.partition("?")
            if action.where == "path":
                changed = pattern.sub(replacement, path)
                if changed == path:
                    return request
                return replace(request, path=changed + sep + query)
            if not sep:
                return request
            changed = pattern.sub(replacement, query)
            if changed == query:
                return request
            return replace(request, path=f"{path}?{changed}" if changed else path)
        if action.where == "header":
            wanted = (action.name or "").lower()
            headers = tuple(
                (key, pattern.sub(replacement, value) if key.lower() == wanted else value)
                for key, value in request.headers
            )
            return request if headers == request.headers else replace(request, headers=headers)
        # body
        if not request.body or body_encoded(request):
            return request
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return request
        changed = pattern.sub(replacement, text)
        if changed == text:
            return request
        return replace(request, body=changed.encode("utf-8"))

    def _json(self, action: JsonSet | JsonDelete, request: OutgoingRequest) -> OutgoingRequest:
        if not request.body or body_encoded(request):
            return request
        try:
            document = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            return request
        if isinstance(action, JsonSet):
            value = self._reader.get() if self._reader is not None else action.value
            document, changed = json_set(document, action.path, value)
        else:
            document, changed = json_delete(document, action.path)
        if not changed:
            return request
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return replace(request, body=body)


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
