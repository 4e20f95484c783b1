"""A chain of header and path edits fused into one function per request.

The usual transforms file (header rules, path and query rules, a JWT re-sign,
value correlation first) otherwise costs a call and a header lookup per step
and request. `fuse()` looks at a chain's unconditional edits once, at start:
when every step after an optional leading correlation is a static
`set_header`, `remove_header`, `replace_header`, `replace_path`,
`replace_query` or a JWT re-sign, it returns a `Fused` that makes the same
request, without a call or a draft per step: the header steps in order on one
list of headers, the path steps on one split of the path, the same names
listed in the same order. Any other chain gets None and runs step by step (`chain.Chain`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from replayer.models import OutgoingRequest, Skipped
from replayer.transforming.jwtresign import JwtResigner
from replayer.transforming.rules import Draft, RuleStep, checked_path, rebuilt
from replayer.transforming.step import TransformContext

Edit = Callable[[Draft, TransformContext], bool]

_SET, _REMOVE, _REPLACE, _JWT = range(4)
_PATH, _QUERY = range(2)
_NAME = itemgetter(0)
#: What `rules.checked_path` refuses in a path (checked inline here, a call less).
_BAD_IN_PATH = re.compile(r"[^\x21-\x7e]")


class StepFailed(Exception):
    """A fused step raised something other than `Skipped` (a bug): its name and the error."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name)
        self.name = name
        self.error = error


class Fused:
    """The fused form of a chain's edits (see the module doc)."""

    def __init__(
        self,
        first: tuple[str, Edit] | None,
        names: Sequence[str],
        headers: Sequence[tuple[Any, ...]],
        paths: Sequence[tuple[Any, ...]],
    ) -> None:
        #: The leading correlation's name and edit (it lists its own names), or None.
        self._first = first
        #: The fused steps' names; step i is bit 1 << i.
        self._names = tuple(names)
        #: The header steps in order: (kind, bit, step name, lower-cased header name,
        #: what the step needs, the header name as written for set_header).
        self._headers = tuple(headers)
        #: The path and query rules in order: (kind, bit, step name, rule).
        self._paths = tuple(paths)

    def run(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """The request as the chain's steps one by one would make it; raises `Skipped`,
        or `StepFailed` for a step's bug."""
        body = request.body
        first = self._first
        if first is not None:
            draft = Draft(request)
            try:
                changed = first[1](draft, context)
            except Skipped:
                raise
            except Exception as exc:
                raise StepFailed(first[0], exc) from exc
            out = draft.headers  # the draft's own lists: edited in place
            names = draft.names
            raw, body = draft.path, draft.body
        else:
            changed = False
            out = list(request.headers)
            names = list(map(str.lower, map(_NAME, out)))
            raw = request.path
        mask = 0
        if self._paths:
            try:
                raw, mask = self._path(raw)
            except _PathSkipped as stop:
                # The header steps before the failing one ran in a chain step by step.
                # (and listed their names when they changed something).
                limit = stop.bit
                ops = [op for op in self._headers if op[1] < limit]
                self._list(context, stop.mask | self._header_pass(out, names, context, ops))
                raise stop.skipped from None
        mask |= self._header_pass(out, names, context, self._headers)
        if not mask and not changed:
            return request
        if mask:
            self._list(context, mask)
        return rebuilt(request, request.method, raw, tuple(out), body)

    def _list(self, context: TransformContext, mask: int) -> None:
        """List the names of the steps in `mask`, in chain order."""
        applied = context.applied
        for i, name in enumerate(self._names):
            if mask >> i & 1:
                applied.append(name)

    def _path(self, raw: str) -> tuple[str, int]:
        path, sep, query = raw.partition("?")
        mask = 0
        for kind, bit, name, rule in self._paths:
            if kind == _PATH:
                new = rule._pattern.sub(rule._replacement, path)
                if new == path:
                    continue
                whole = new + sep + query
                if whole[:1] != "/" or _BAD_IN_PATH.search(whole):
                    _fail(name, bit, mask, whole)
                path, sep, query = whole.partition("?")
            else:
                if not sep:
                    continue
                new = rule._memo.get(query)
                if new is None:
                    new = rule._sub(query)
                if new == query:
                    continue
                whole = f"{path}?{new}" if new else path
                if whole[:1] != "/" or _BAD_IN_PATH.search(whole):
                    _fail(name, bit, mask, whole)
                path, sep, query = whole.partition("?")
            mask |= bit
        return (path + sep + query if mask else raw), mask

    def _header_pass(
        self,
        out: list[tuple[str, str]],
        names: list[str],
        context: TransformContext,
        ops: Sequence[tuple[Any, ...]],
    ) -> int:
        """The header steps in chain order on one list: the usual header (one or none)
        found by the list's own search, without a call per step; `out` and `names`
        are edited in place. The bits of the steps that changed something."""
        mask = 0
        op: tuple[Any, ...] = ()
        try:
            for op in ops:
                kind, bit, _, wanted, arg, written = op
                count = names.count(wanted)
                if count == 1:
                    i = names.index(wanted)
                    key, value = out[i]
                    if kind == _SET:
                        if value == arg:
                            continue
                        out[i] = (key, arg)
                    elif kind == _REMOVE:
                        del out[i], names[i]
                    elif kind == _REPLACE:
                        new = arg._memo.get(value)
                        if new is None:
                            new = arg._sub(value)
                        if new == value:
                            continue
                        out[i] = (key, new)
                    else:
                        signed = arg.resign_one(value, context)
                        if signed is None:
                            continue
                        out[i] = (key, signed)
                    mask |= bit
                elif not count:
                    if kind == _SET:
                        out.append((written, arg))
                        names.append(wanted)
                        mask |= bit
                elif _many(out, names, op, context):
                    mask |= bit
        except Skipped:
            raise
        except Exception as exc:
            raise StepFailed(op[2], exc) from exc
        return mask


def _many(
    out: list[tuple[str, str]], names: list[str], op: tuple[Any, ...], context: TransformContext
) -> bool:
    """A header step on a header the request holds more than once (rare), in place."""
    kind, _, _, wanted, arg = op[:5]
    if kind == _SET:  # the first one set, the others dropped
        first = names.index(wanted)
        out[first] = (out[first][0], arg)
        keep = [i == first or n != wanted for i, n in enumerate(names)]
    elif kind == _REMOVE:
        keep = [n != wanted for n in names]
    else:
        changed = False
        for i, name in enumerate(names):
            if name != wanted:
                continue
            key, value = out[i]
            new = arg._sub(value) if kind == _REPLACE else arg.resign_one(value, context)
            if new is not None and (kind == _JWT or new != value):
                out[i] = (key, new)
                changed = True
        return changed
    out[:] = [h for h, k in zip(out, keep, strict=True) if k]
    names[:] = [n for n, k in zip(names, keep, strict=True) if k]
    return True


class _PathSkipped(Exception):
    """A path step's `Skipped`, its bit and the bits of the path steps that ran before."""

    def __init__(self, bit: int, mask: int, skipped: Skipped) -> None:
        super().__init__()
        self.bit = bit
        self.mask = mask
        self.skipped = skipped


def _fail(name: str, bit: int, mask: int, whole: str) -> None:
    """Raise the `Skipped` a rule raises for a path that is not one, as `_PathSkipped`."""
    try:
        checked_path(name, whole)
    except Skipped as skipped:
        raise _PathSkipped(bit, mask, skipped) from None
    raise AssertionError(whole)  # pragma: no cover (only called for a bad path)


def fuse(edits: Sequence[tuple[str, Edit, bool]]) -> Fused | None:
    """The fused form of a chain of unconditional edits (name, edit, lists its own
    names), or None when they cannot be fused (see the module doc)."""
    first: tuple[str, Edit] | None = None
    rest = list(edits)
    if rest and rest[0][2]:
        name, edit, _ = rest.pop(0)
        first = (name, edit)
    if len(rest) > 60:  # one bit of an int per step: any number works, few is usual
        return None
    names: list[str] = []
    headers: list[tuple[Any, ...]] = []
    paths: list[tuple[Any, ...]] = []
    for index, (name, edit, lists) in enumerate(rest):
        owner = getattr(edit, "__self__", None)
        function = getattr(edit, "__func__", None)
        bit = 1 << index
        names.append(name)
        if lists or owner is None:
            return None
        if isinstance(owner, JwtResigner) and function is JwtResigner.edit:
            headers.append((_JWT, bit, name, owner._header, owner, None))
        elif not isinstance(owner, RuleStep):
            return None
        elif function is RuleStep._set_static:
            headers.append((_SET, bit, name, owner._wanted, owner._static, owner._header))
        elif function is RuleStep._remove_header:
            headers.append((_REMOVE, bit, name, owner._header.lower(), None, None))
        elif function is RuleStep._replace_header:
            headers.append((_REPLACE, bit, name, owner._header, owner, None))
        elif function is RuleStep._replace_path:
            paths.append((_PATH, bit, name, owner))
        elif function is RuleStep._replace_query:
            paths.append((_QUERY, bit, name, owner))
        else:
            return None
    return Fused(first, names, headers, paths)
