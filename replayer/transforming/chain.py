"""One role's steps in order, run on a request just before it goes out.

A `Chain` holds the steps of one role (shadow or baseline) with their
conditions (`Condition`: method, path, recorded authority, role). `run()`
applies each step whose condition holds, lists the name of each that changed
the request in the context, and then, if anything changed, puts Content-Length
right for the body sent and checks the request can still be written (a
method that is a token, a path of printable ASCII starting with `/`, header
names that are tokens and values without CR, LF or NUL): otherwise the record
is skipped as `skipped-transform`. A step that raises anything but `Skipped`
(a bug) skips the record the same way; the first failure of each step and
kind is logged. Consecutive rules share one mutable `Draft` (one request is built of it, not one
per rule). `Prepared` ties a chain to one record's context: the sender
calls `before()` when the request's turn comes and `after()` with its outcome.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from replayer.models import Outcome, OutgoingRequest, Skipped
from replayer.transforming.config import ROLES, Condition
from replayer.transforming.rules import Draft
from replayer.transforming.step import Observer, Step, TransformContext
from replayer.transforming.targets import authority_key, event_authority

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_IN_VALUE = re.compile(r"[\r\n\x00]")
_BAD_IN_PATH = re.compile(r"[^\x21-\x7e]")

Edit = Callable[[Draft, TransformContext], bool]


def holds(when: Condition, request: OutgoingRequest | Draft, context: TransformContext) -> bool:
    """True when every part of `when` holds for this request of this record."""
    if when.roles is not ROLES and context.role not in when.roles:
        return False
    if when.methods is not None and request.method.upper() not in when.methods:
        return False
    if when.path is not None and not when.path.search(request.path.partition("?")[0]):
        return False
    if when.authorities is not None:
        event = context.event
        try:
            host, port = authority_key(event_authority(event), event["scheme"] or "http")
        except ValueError:
            return False
        return any(h == host and (p is None or p == port) for h, p in when.authorities)
    return True


def _always(when: Condition) -> bool:
    return when == Condition()


@dataclass(frozen=True, slots=True)
class Entry:
    """A step, when it applies, and its plain `edit` of a `Draft` when it has one (rules)."""

    step: Step
    when: Condition
    always: bool
    edit: Edit | None


def entry(step: Step, when: Condition | None = None) -> Entry:
    """An `Entry` for `step` (rule steps edit a draft, without await)."""
    when = when or Condition()
    edit = getattr(step, "edit", None)
    return Entry(step, when, _always(when), edit if callable(edit) else None)


class Chain:
    """The steps and observers of one role (see the module doc)."""

    def __init__(self, entries: Sequence[Entry], observers: Sequence[Observer] = ()) -> None:
        self.entries = tuple(entries)
        self.observers = tuple(observers)
        self._logged: set[tuple[str, str]] = set()
        #: (name, edit) of every step when all are plain edits without a condition
        #: (rules, correlation, JWT re-sign): `run` then shares one draft without
        #: looking at conditions or awaiting anything.
        #: The flag says the step lists the names it applied itself (`lists_names`).
        self._edits: tuple[tuple[str, Edit, bool], ...] | None = None
        if all(e.always and e.edit is not None for e in self.entries):
            self._edits = tuple(
                (e.step.name, e.edit, bool(getattr(e.step, "lists_names", False)))
                for e in self.entries
                if e.edit
            )

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(e.step for e in self.entries)

    async def run(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """The request after every step that applies; raises `Skipped` to skip the record."""
        if self._edits is not None:
            return self._run_edits(request, context, self._edits)
        original = request
        draft: Draft | None = None
        checked = True  # only rules changed it, and they check what they change
        for item in self.entries:
            if not item.always and not holds(item.when, draft or request, context):
                continue
            step = item.step
            listed = len(context.applied)
            try:
                if item.edit is not None:
                    if draft is None:
                        draft = Draft(request)
                    if item.edit(draft, context) and len(context.applied) == listed:
                        context.applied.append(step.name)
                    continue
                if draft is not None:
                    request, draft = draft.build(request), None
                changed = await step.apply(request, context)
            except Skipped:
                raise
            except Exception as exc:
                self._failed(step.name, exc, context)
                raise Skipped("transform", f"{step.name} failed: {type(exc).__name__}") from None
            if changed is not request:
                if len(context.applied) == listed:  # a step may list finer names itself
                    context.applied.append(step.name)
                request = changed
                checked = False
        if draft is not None:
            request = draft.build(request)
        if request is original:
            return request
        return finish(request, original, check=not checked)

    def _run_edits(
        self,
        request: OutgoingRequest,
        context: TransformContext,
        edits: tuple[tuple[str, Edit, bool], ...],
    ) -> OutgoingRequest:
        """`run` for a chain of unconditional edits: one draft, one request built."""
        draft = Draft(request)
        applied = context.applied
        for name, edit, lists in edits:
            try:
                if lists:
                    listed = len(applied)
                    if edit(draft, context) and len(applied) == listed:
                        applied.append(name)
                elif edit(draft, context):
                    applied.append(name)
            except Skipped:
                raise
            except Exception as exc:
                self._failed(name, exc, context)
                raise Skipped("transform", f"{name} failed: {type(exc).__name__}") from None
        if not draft.changed:
            return request
        # Edits check what they change themselves: only Content-Length may be left to do.
        built = draft.build(request)
        if built.body is request.body:
            return built
        return finish(built, request, check=False)

    def observe(self, context: TransformContext, outcome: Outcome) -> None:
        """Tell each observer how the request ended; an observer's failure is logged once."""
        for observer in self.observers:
            try:
                observer.observe(context, outcome.response)
            except Exception as exc:
                self._failed(type(observer).__name__, exc, context)

    def _failed(self, where: str, exc: Exception, context: TransformContext) -> None:
        kind = (where, type(exc).__name__)
        if kind in self._logged:
            return
        self._logged.add(kind)
        logger.warning(
            "transform %s raised %s for exchange %s (further ones are only counted)",
            where,
            type(exc).__name__,
            context.event["id"],
            exc_info=True,
        )


def finish(
    request: OutgoingRequest, original: OutgoingRequest, *, check: bool = True
) -> OutgoingRequest:
    """Content-Length for the body sent; with `check`, `Skipped("transform")` for a
    request that cannot be written. Only what changed is looked at (a header pair
    that is the original's object was checked when the request was built)."""
    if request.body is not original.body and request.body != original.body:
        length = str(len(request.body))
        headers = list(request.headers)
        found = False
        for i, (name, value) in enumerate(headers):
            if name.lower() == "content-length":
                found = True
                if value != length:
                    headers[i] = (name, length)
        if not found and request.body:
            headers.append(("Content-Length", length))
        request = replace(request, headers=tuple(headers))
    if not check:
        return request
    if request.method is not original.method and not _TOKEN.fullmatch(request.method):
        raise Skipped("transform", f"the method became {request.method[:40]!r}, not a token")
    path = request.path
    if path is not original.path and (not path.startswith("/") or _BAD_IN_PATH.search(path)):
        raise Skipped("transform", f"the path became {path[:80]!r}, not a request path")
    if request.headers is not original.headers:
        known = set(map(id, original.headers))
        for pair in request.headers:
            if id(pair) in known:
                continue
            name, value = pair
            if not _TOKEN.fullmatch(name):
                raise Skipped("transform", f"a header name became {name[:40]!r}, not a token")
            if _BAD_IN_VALUE.search(value):
                raise Skipped("transform", f"header {name[:40]!r} got a value with CR, LF or NUL")
    return request


class Prepared:
    """One record's request for one role: the sender calls `before()` and `after()`."""

    __slots__ = ("chain", "context")

    def __init__(self, chain: Chain, context: TransformContext) -> None:
        self.chain = chain
        self.context = context

    async def before(self, request: OutgoingRequest) -> OutgoingRequest:
        chain = self.chain
        edits = chain._edits
        if edits is not None:  # no coroutine of its own: nothing to await
            return chain._run_edits(request, self.context, edits)
        return await chain.run(request, self.context)

    def after(self, outcome: Outcome) -> None:
        chain = self.chain
        observers = chain.observers
        if not observers:
            return
        # `Chain.observe` inlined: a call less per request.
        context, response = self.context, outcome.response
        for observer in observers:
            try:
                observer.observe(context, response)
            except Exception as exc:
                chain._failed(type(observer).__name__, exc, context)
