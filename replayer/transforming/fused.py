"""A chain of header and path edits fused into one pass over the request.

The usual transforms file (header rules, path and query rules, a JWT re-sign,
value correlation first) otherwise costs a call and a header lookup per step
and request. `fuse()` looks at a chain's unconditional edits once, at start:
when every step after an optional leading correlation is a static
`set_header`, `remove_header`, `replace_header`, `replace_path`,
`replace_query` or a JWT re-sign, on distinct headers and with at most one
re-sign, it returns a `Fused` that makes the same request in one walk over the
headers and one rewrite of the path, and lists the same names in the same
order. Any other chain gets None and runs step by step (`chain.Chain`).
"""

from __future__ import annotations

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
        headers: dict[str, tuple[Any, ...]],
        paths: Sequence[tuple[Any, ...]],
        appends: Sequence[tuple[int, str, str]],
    ) -> None:
        #: The leading correlation's name and edit (it lists its own names), or None.
        self._first = first
        #: The fused steps' names; step i is bit 1 << i.
        self._names = tuple(names)
        #: Lower-cased header name → (kind, bit, step name, what the step needs).
        self._headers = headers
        #: The path and query rules in order: (kind, bit, step name, rule).
        self._paths = tuple(paths)
        #: (bit, header name, value) of each set_header, appended when its header is absent.
        self._appends = tuple(appends)

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
            headers: Sequence[tuple[str, str]] = draft.headers
            names: Sequence[str] = draft.names
            raw, body = draft.path, draft.body
        else:
            changed = False
            headers = request.headers
            names = list(map(str.lower, map(_NAME, headers)))
            raw = request.path
        mask = 0
        if self._paths:
            try:
                raw, mask = self._path(raw)
            except _PathSkipped as stop:
                # The header steps before the failing one ran in a chain step by step.
                # (and listed their names when they changed something).
                limit = stop.bit
                ops = {k: v for k, v in self._headers.items() if v[1] < limit}
                self._list(context, stop.mask | self._header_pass(headers, names, context, ops)[1])
                raise stop.skipped from None
        out, header_mask = self._header_pass(headers, names, context, self._headers)
        mask |= header_mask
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
                path, sep, query = _check(name, bit, mask, new + sep + query).partition("?")
            else:
                if not sep:
                    continue
                new = rule._memo.get(query)
                if new is None:
                    new = rule._sub(query)
                if new == query:
                    continue
                whole = _check(name, bit, mask, f"{path}?{new}" if new else path)
                path, sep, query = whole.partition("?")
            mask |= bit
        return (path + sep + query if mask else raw), mask

    def _header_pass(
        self,
        headers: Sequence[tuple[str, str]],
        names: Sequence[str],
        context: TransformContext,
        ops: dict[str, tuple[Any, ...]],
    ) -> tuple[list[tuple[str, str]], int]:
        out: list[tuple[str, str]] = []
        mask = seen = 0
        op: tuple[Any, ...] = ()
        try:
            for pair, lower in zip(headers, names, strict=True):
                op = ops.get(lower, ())
                if not op:
                    out.append(pair)
                    continue
                kind, bit = op[0], op[1]
                if kind == _SET:
                    if seen & bit:  # a second one: dropped
                        mask |= bit
                        continue
                    seen |= bit
                    if pair[1] == op[3]:
                        out.append(pair)
                    else:
                        out.append((pair[0], op[3]))
                        mask |= bit
                elif kind == _REMOVE:
                    mask |= bit
                elif kind == _REPLACE:
                    value = pair[1]
                    rule = op[3]
                    new = rule._memo.get(value)
                    if new is None:
                        new = rule._sub(value)
                    if new == value:
                        out.append(pair)
                    else:
                        out.append((pair[0], new))
                        mask |= bit
                else:
                    signed = op[3].resign_one(pair[1], context)
                    if signed is None:
                        out.append(pair)
                    else:
                        out.append((pair[0], signed))
                        mask |= bit
        except Skipped:
            raise
        except Exception as exc:
            raise StepFailed(op[2], exc) from exc
        for bit, name, value in self._appends:
            if not seen & bit and name.lower() in ops:
                out.append((name, value))
                mask |= bit
        return out, mask


class _PathSkipped(Exception):
    """A path step's `Skipped`, its bit and the bits of the path steps that ran before."""

    def __init__(self, bit: int, mask: int, skipped: Skipped) -> None:
        super().__init__()
        self.bit = bit
        self.mask = mask
        self.skipped = skipped


def _check(name: str, bit: int, mask: int, whole: str) -> str:
    try:
        return checked_path(name, whole)
    except Skipped as skipped:
        raise _PathSkipped(bit, mask, skipped) from None


def fuse(edits: Sequence[tuple[str, Edit, bool]]) -> Fused | None:
    """The fused form of a chain of unconditional edits (name, edit, lists its own
    names), or None when they cannot be fused (see the module doc)."""
    first: tuple[str, Edit] | None = None
    rest = list(edits)
    if rest and rest[0][2]:
        name, edit, _ = rest.pop(0)
        first = (name, edit)
    names: list[str] = []
    headers: dict[str, tuple[Any, ...]] = {}
    paths: list[tuple[Any, ...]] = []
    appends: list[tuple[int, str, str]] = []
    for index, (name, edit, lists) in enumerate(rest):
        owner = getattr(edit, "__self__", None)
        function = getattr(edit, "__func__", None)
        bit = 1 << index
        names.append(name)
        op: tuple[Any, ...]
        if lists or owner is None:
            return None
        if isinstance(owner, JwtResigner) and function is JwtResigner.edit:
            if any(o[0] == _JWT for o in headers.values()):
                return None
            key, op = owner._header, (_JWT, bit, name, owner)
        elif not isinstance(owner, RuleStep):
            return None
        elif function is RuleStep._set_static:
            key, op = owner._wanted, (_SET, bit, name, owner._static)
            appends.append((bit, owner._header, str(owner._static)))
        elif function is RuleStep._remove_header:
            key, op = owner._header.lower(), (_REMOVE, bit, name)
        elif function is RuleStep._replace_header:
            key, op = owner._header, (_REPLACE, bit, name, owner)
        elif function is RuleStep._replace_path:
            paths.append((_PATH, bit, name, owner))
            continue
        elif function is RuleStep._replace_query:
            paths.append((_QUERY, bit, name, owner))
            continue
        else:
            return None
        if key in headers:
            return None
        headers[key] = op
    if len(names) > 60:  # one bit of an int per step: any number works, few is usual
        return None
    return Fused(first, names, headers, paths, appends)
