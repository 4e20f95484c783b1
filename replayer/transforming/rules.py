"""The rewrite rules as steps: headers, regex replace, JSON set and delete.

Each `Rule` of the config becomes a `RuleStep`; the chain calls its `edit()`,
plain (not async: rules never wait), on a mutable `Draft` that consecutive
rules share, and makes one request of it at the end. A header rule replaces
every occurrence of its header with one (`set_header` adds it when absent) or
removes them all; a regex rule works on the path without the query, the query
without the `?`, the values of one header, or a text body (no Content-Encoding,
valid UTF-8); a JSON rule on a JSON body (no Content-Encoding), written back
compactly. A body that is not text or JSON is left alone by those rules.
Content-Length is put right by the chain (`replayer.transforming.chain`) once
every step ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, cast

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
_BAD_IN_PATH = re.compile(r"[^\x21-\x7e]")


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


class Draft:
    """A request being rewritten by consecutive rules: mutable, made into one
    `OutgoingRequest` at the end (building a frozen request per rule would cost
    more than the rules themselves)."""

    __slots__ = ("body", "changed", "headers", "method", "path")

    def __init__(self, request: OutgoingRequest) -> None:
        self.method = request.method
        self.path = request.path
        self.headers = request.headers
        self.body = request.body
        self.changed = False

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def build(self, request: OutgoingRequest) -> OutgoingRequest:
        """The request as rewritten (`request` itself when nothing changed)."""
        if not self.changed:
            return request
        return OutgoingRequest(
            method=self.method,
            target=request.target,
            path=self.path,
            headers=self.headers,
            body=self.body,
            exchange_id=request.exchange_id,
        )


def body_encoded(draft: Draft) -> bool:
    """True when the body carries a Content-Encoding other than identity (gzip ...)."""
    encoding = draft.header("content-encoding")
    return encoding is not None and encoding.strip().lower() not in ("", "identity")


class RuleStep:
    """One rewrite rule as a step (see the module doc).

    The chain calls `edit()` on a `Draft` shared by consecutive rules; `apply()`
    is the `Step` form of the same.
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        action = rule.action
        self._reader: ValueReader | None = None
        # The action's edit, chosen once (this runs for every request).
        self._edit: Callable[[Draft], bool]
        if isinstance(action, SetHeader):
            self._reader = ValueReader(action.value)
            self._edit = self._set_header
        elif isinstance(action, RemoveHeader):
            self._edit = self._remove_header
        elif isinstance(action, Replace):
            self._edit = {
                "path": self._replace_path,
                "query": self._replace_path,
                "header": self._replace_header,
                "body": self._replace_body,
            }[action.where]
        else:
            if isinstance(action, JsonSet) and isinstance(action.value, Value):
                self._reader = ValueReader(action.value)
            self._edit = self._json

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        draft = Draft(request)
        self.edit(draft, context)
        return draft.build(request)

    def edit(self, draft: Draft, context: TransformContext) -> bool:
        """Rewrite `draft` in place; True when the rule changed it."""
        if self._edit(draft):
            draft.changed = True
            return True
        return False

    def _set_header(self, draft: Draft) -> bool:
        action = cast(SetHeader, self.rule.action)
        assert self._reader is not None  # noqa: S101 (set in __init__)
        value = self._reader.get()
        if any(c in value for c in _BAD_IN_VALUE):
            raise Skipped("transform", f"rule {self.name}: the header value holds CR, LF or NUL")
        headers = set_header(draft.headers, action.name, value)
        if headers == draft.headers:
            return False
        draft.headers = headers
        return True

    def _remove_header(self, draft: Draft) -> bool:
        wanted = cast(RemoveHeader, self.rule.action).name.lower()
        if not any(key.lower() == wanted for key, _ in draft.headers):
            return False
        draft.headers = remove_header(draft.headers, wanted)
        return True

    def _replace_path(self, draft: Draft) -> bool:
        action = cast(Replace, self.rule.action)
        pattern, replacement = action.pattern, action.replacement
        path, sep, query = draft.path.partition("?")
        if action.where == "path":
            changed = pattern.sub(replacement, path)
            if changed == path:
                return False
            whole = changed + sep + query
        else:
            if not sep:
                return False
            changed = pattern.sub(replacement, query)
            if changed == query:
                return False
            whole = f"{path}?{changed}" if changed else path
        if not whole.startswith("/") or _BAD_IN_PATH.search(whole):
            raise Skipped("transform", f"rule {self.name} made the path {whole[:80]!r}, not a path")
        draft.path = whole
        return True

    def _replace_header(self, draft: Draft) -> bool:
        action = cast(Replace, self.rule.action)
        wanted = (action.name or "").lower()
        headers = list(draft.headers)
        changed = False
        for i, (key, value) in enumerate(headers):
            if key.lower() == wanted:
                new = action.pattern.sub(action.replacement, value)
                if new != value:
                    headers[i] = (key, new)
                    changed = True
        if changed:
            draft.headers = tuple(headers)
        return changed

    def _replace_body(self, draft: Draft) -> bool:
        action = cast(Replace, self.rule.action)
        if not draft.body or body_encoded(draft):
            return False
        try:
            text = draft.body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        changed = action.pattern.sub(action.replacement, text)
        if changed == text:
            return False
        draft.body = changed.encode("utf-8")
        return True

    def _json(self, draft: Draft) -> bool:
        action = cast(JsonSet | JsonDelete, self.rule.action)
        if not draft.body or body_encoded(draft):
            return False
        try:
            document = json.loads(draft.body)
        except (UnicodeDecodeError, ValueError):
            return False
        if isinstance(action, JsonSet):
            value = self._reader.get() if self._reader is not None else action.value
            document, changed = json_set(document, action.path, value)
        else:
            document, changed = json_delete(document, action.path)
        if not changed:
            return False
        draft.body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return True


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
