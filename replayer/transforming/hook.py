"""The user's Python hook: `--transform-module package.module:function`.

Like a mitmproxy addon or GoReplay middleware, the function gets each outgoing
request as a `HookRequest` (method, path, headers, body, and `meta`: the
recorded event's metadata) and returns it, changed or not, or None to skip
the record. It may be a coroutine function. Skipping, raising, or returning
anything else skips the record as `skipped-transform` (counted; the first
failure of each exception type is logged with its traceback, the rest only
counted), never a crash. `load_hook` imports it at start: `package.module`
from the Python path (the working directory is looked in last) or a file
`path/to/hooks.py`; a bad one is a one-line `ConfigError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from replayer.models import OutgoingRequest, Skipped
from replayer.transforming.step import TransformContext
from schemas.records import HttpExchange
from trafficmirror.plumbing.errors import ConfigError

logger = logging.getLogger(__name__)

HookFunction = Callable[["HookRequest"], Any]


@dataclass(frozen=True)
class Meta:
    """What the hook may read about the record (read-only).

    `event` is the whole recorded `HttpExchange` (a dict; its production
    response under `event["response"]`). `key`: the recorded client connection
    (the Kafka message key). `role`: `shadow` or `baseline`. `target`: the
    origin the request goes to.
    """

    exchange_id: str
    authority: str
    scheme: str
    http_version: str
    recorded_us: int
    key: bytes | None
    role: str
    target: str
    event: HttpExchange = field(repr=False)


@dataclass
class HookRequest:
    """The request the hook may change in place (or replace) and return."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    meta: Meta

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        """Replace every `name` header with one `name: value` (added when absent)."""
        wanted = name.lower()
        out: list[tuple[str, str]] = []
        done = False
        for key, old in self.headers:
            if key.lower() != wanted:
                out.append((key, old))
            elif not done:
                out.append((name, value))
                done = True
        if not done:
            out.append((name, value))
        self.headers = out

    def remove_header(self, name: str) -> None:
        """Remove every `name` header."""
        wanted = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != wanted]


def load_hook(spec: str) -> HookFunction:
    """The function `spec` names (`package.module:function` or `file.py:function`).

    Raises `ConfigError` with one line when it cannot be imported or is not callable.
    """
    where = spec
    module_name, sep, function_name = spec.rpartition(":")
    if not sep or not module_name or not function_name:
        raise ConfigError(f"{where}: give package.module:function or path/to/file.py:function")
    try:
        module = _import(module_name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except Exception as exc:  # the user's module failed to import: one line, no traceback
        raise ConfigError(f"{where}: importing {module_name} failed: {_describe(exc)}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ConfigError(f"{where}: {module_name} has no {function_name!r}")
    if not callable(function):
        raise ConfigError(f"{where}: {module_name}.{function_name} is not callable")
    return function  # type: ignore[no-any-return]


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"no file {name}")
        spec = importlib.util.spec_from_file_location(f"trafficmirror_hook_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # last: never shadows an installed package
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"no module named {exc.name!r}") from None
        raise


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HookStep:
    """Calls the hook for each request (a `Step`); see the module doc."""

    def __init__(self, spec: str, function: HookFunction) -> None:
        self.name = f"hook:{spec}"
        self.function = function
        self._is_coroutine = inspect.iscoroutinefunction(function)
        self._failed: set[str] = set()

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        event = context.event
        given = HookRequest(
            method=request.method,
            path=request.path,
            headers=list(request.headers),
            body=request.body,
            meta=Meta(
                exchange_id=event["id"],
                authority=event["authority"],
                scheme=event["scheme"],
                http_version=event["http_version"],
                recorded_us=event["request_start_us"],
                key=context.key,
                role=context.role,
                target=request.target.origin,
                event=event,
            ),
        )
        try:
            answer = self.function(given)
            if self._is_coroutine or inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            kind = type(exc).__name__
            if kind not in self._failed:
                self._failed.add(kind)
                logger.warning(
                    "the transform hook raised %s for exchange %s; the record is skipped as "
                    "skipped-transform (further %s are only counted)",
                    kind,
                    event["id"],
                    kind,
                    exc_info=True,
                )
            raise Skipped("transform", f"{self.name} raised {_describe(exc)}") from None
        if answer is None:
            raise Skipped("transform", f"{self.name} skipped it")
        if not isinstance(answer, HookRequest):
            kind = f"returned {type(answer).__name__}"
            if kind not in self._failed:
                self._failed.add(kind)
                logger.warning(
                    "the transform hook %s, not a HookRequest or None: the record is skipped "
                    "as skipped-transform",
                    kind,
                )
            raise Skipped("transform", f"{self.name} {kind}")
        headers = tuple((str(k), str(v)) for k, v in answer.headers)
        if (
            answer.method == request.method
            and answer.path == request.path
            and headers == request.headers
            and answer.body == request.body
        ):
            return request
        return replace(
            request,
            method=str(answer.method),
            path=str(answer.path),
            headers=headers,
            body=bytes(answer.body),
        )
