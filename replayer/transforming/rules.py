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
from collections.abc import Callable
from operator import itemgetter
from typing import cast

from replayer.models import OutgoingRequest, Skipped, rebuilt
from replayer.transforming.config import (
    JsonDelete,
    JsonSet,
    RemoveHeader,
    Replace,
    Rule,
    SetHeader,
    Value,
)
from replayer.transforming.jsonedit import json_delete, json_set
from replayer.transforming.step import TransformContext
from replayer.transforming.values import ValueReader

_BAD_IN_VALUE = re.compile("[\r\n\x00]")
#: The pattern of a rule that has none.
_NOTHING = re.compile("(?!)")
_BAD_IN_PATH = re.compile(r"[^\x21-\x7e]")
#: Results a regex rule remembers, and the longest text it remembers one for.
_MEMO_SIZE = 256
_MEMO_CHARS = 1024
_NAME = itemgetter(0)


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
    more than the rules themselves). `names` holds the lower-cased header names,
    kept beside `headers`, so a header rule looks its header up without
    lower-casing every name again."""

    __slots__ = ("body", "changed", "headers", "method", "names", "path")

    def __init__(self, request: OutgoingRequest) -> None:
        self.method = request.method
        self.path = request.path
        self.headers = list(request.headers)
        self.names = list(map(str.lower, map(_NAME, request.headers)))
        self.body = request.body
        self.changed = False

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower case), or None."""
        try:
            return self.headers[self.names.index(name)][1]
        except ValueError:
            return None

    def set_header(self, name: str, value: str) -> bool:
        """One `name: value` for every `name` header (where the first was; appended
        when absent); False when that was so already."""
        wanted = name.lower()
        names, headers = self.names, self.headers
        count = names.count(wanted)
        if not count:
            self.changed = True
            headers.append((name, value))
            names.append(wanted)
            return True
        first = names.index(wanted)
        if count == 1 and headers[first][1] == value:
            return False
        self.changed = True
        headers[first] = (headers[first][0], value)
        if count > 1:
            self._keep([i == first or n != wanted for i, n in enumerate(names)])
        return True

    def remove_header(self, name: str) -> bool:
        """Remove every `name` header; False when there was none."""
        wanted = name.lower()
        names = self.names
        count = names.count(wanted)
        if count == 1:  # the usual case: delete in place
            i = names.index(wanted)
            del names[i], self.headers[i]
        elif not count:
            return False
        else:
            self._keep([n != wanted for n in names])
        self.changed = True
        return True

    def _keep(self, keep: list[bool]) -> None:
        self.headers = [h for h, k in zip(self.headers, keep, strict=True) if k]
        self.names = [n for n, k in zip(self.names, keep, strict=True) if k]

    def build(self, request: OutgoingRequest) -> OutgoingRequest:
        """The request as rewritten (`request` itself when nothing changed)."""
        if not self.changed:
            return request
        return rebuilt(request, self.method, self.path, tuple(self.headers), self.body)


def _bad_value(value: str) -> bool:
    return _BAD_IN_VALUE.search(value) is not None


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
        # What the edit needs, taken out of the action once (this runs for every request).
        self._reader: ValueReader | None = None
        self._static: str | None = None  # a set_header value that reads no file
        self._header = ""
        self._wanted = ""  # `_header` lower-cased
        self._pattern = _NOTHING
        self._replacement = ""
        #: Recent results of the regex replacement of header values and queries, which
        #: repeat from request to request (User-Agent, a fixed query): bounded.
        self._memo: dict[str, str] = {}
        #: Rewrites a `Draft` in place, marks it changed and says True when it changed it.
        self.edit: Callable[[Draft, TransformContext], bool]
        if isinstance(action, SetHeader):
            self._header = action.name
            self._wanted = action.name.lower()
            self._reader = ValueReader(action.value)
            static = action.value.static
            self.edit = self._set_header
            if static is not None and not _bad_value(static):
                self._static = static
                self.edit = self._set_static
        elif isinstance(action, RemoveHeader):
            self._header = action.name
            self.edit = self._remove_header
        elif isinstance(action, Replace):
            self._header = (action.name or "").lower()
            self._pattern, self._replacement = action.pattern, action.replacement
            self.edit = {
                "path": self._replace_path,
                "query": self._replace_query,
                "header": self._replace_header,
                "body": self._replace_body,
            }[action.where]
        else:
            if isinstance(action, JsonSet) and isinstance(action.value, Value):
                self._reader = ValueReader(action.value)
            self.edit = self._json

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        draft = Draft(request)
        self.edit(draft, context)
        return draft.build(request)

    def _set_header(self, draft: Draft, context: TransformContext | None = None) -> bool:
        value = self._static
        if value is None:
            assert self._reader is not None  # noqa: S101 (set in __init__)
            value = self._reader.get()
            if _bad_value(value):
                raise Skipped(
                    "transform", f"rule {self.name}: the header value holds CR, LF or NUL"
                )
        return draft.set_header(self._header, value)

    def _set_static(self, draft: Draft, context: TransformContext | None = None) -> bool:
        """`_set_header` with a value that reads no file: `Draft.set_header` inlined
        for its usual case (one header or none; a call less per request)."""
        wanted = self._wanted
        names = draft.names
        count = names.count(wanted)
        value = self._static
        assert value is not None  # noqa: S101 (this edit is chosen only then)
        if count == 1:
            first = names.index(wanted)
            headers = draft.headers
            if headers[first][1] == value:
                return False
            headers[first] = (headers[first][0], value)
            draft.changed = True
            return True
        if not count:
            draft.headers.append((self._header, value))
            names.append(wanted)
            draft.changed = True
            return True
        return draft.set_header(self._header, value)

    def _remove_header(self, draft: Draft, context: TransformContext | None = None) -> bool:
        return draft.remove_header(self._header)

    def _replace_path(self, draft: Draft, context: TransformContext | None = None) -> bool:
        path, sep, query = draft.path.partition("?")
        changed = self._pattern.sub(self._replacement, path)
        if changed == path:
            return False
        return self._set_path(draft, changed + sep + query)

    def _replace_query(self, draft: Draft, context: TransformContext | None = None) -> bool:
        path, sep, query = draft.path.partition("?")
        if not sep:
            return False
        memo = self._memo  # `_sub` inlined: a call less per request
        changed = memo.get(query)
        if changed is None:
            changed = self._sub(query)
        if changed == query:
            return False
        return self._set_path(draft, f"{path}?{changed}" if changed else path)

    def _set_path(self, draft: Draft, whole: str) -> bool:
        if not whole.startswith("/") or _BAD_IN_PATH.search(whole):
            raise Skipped("transform", f"rule {self.name} made the path {whole[:80]!r}, not a path")
        draft.path = whole
        draft.changed = True
        return True

    def _sub(self, text: str) -> str:
        """`text` with the rule's pattern replaced, remembered for texts seen recently."""
        memo = self._memo
        done = memo.get(text)
        if done is None:
            done = self._pattern.sub(self._replacement, text)
            if len(text) <= _MEMO_CHARS:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[text] = done
        return done

    def _replace_header(self, draft: Draft, context: TransformContext | None = None) -> bool:
        wanted = self._header
        names = draft.names
        count = names.count(wanted)
        if not count:
            return False
        headers = draft.headers
        if count == 1:  # the usual case: no walk over every header
            i = names.index(wanted)
            key, value = headers[i]
            new = self._memo.get(value)  # `_sub` inlined: a call less per request
            if new is None:
                new = self._sub(value)
            if new == value:
                return False
            headers[i] = (key, new)
            draft.changed = True
            return True
        changed = False
        for i, name in enumerate(names):
            if name == wanted:
                key, value = headers[i]
                new = self._sub(value)
                if new != value:
                    headers[i] = (key, new)
                    changed = draft.changed = True
        return changed

    def _replace_body(self, draft: Draft, context: TransformContext | None = None) -> bool:
        if not draft.body or body_encoded(draft):
            return False
        try:
            text = draft.body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        changed = self._pattern.sub(self._replacement, text)
        if changed == text:
            return False
        draft.body = changed.encode("utf-8")
        draft.changed = True
        return True

    def _json(self, draft: Draft, context: TransformContext | None = None) -> bool:
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
        draft.changed = True
        return True
