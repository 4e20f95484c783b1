"""What `trafficmirror record` changes in its embedded mitmproxy to cost less per request.

Profiles of `record` under load (py-spy, bench/recorder.py's setup) showed
three per-request costs of mitmproxy itself that a recorder sidecar does not
need. Each change here keeps the proxy's behaviour and only applies inside the
`record` process; `mitmdump -s recorder/addon.py` is left exactly as mitmproxy
runs it.

* Hook dispatch (`HookTable`): mitmproxy's `AddonManager` walks every addon
  for every event of every exchange (a generator, a `getattr` and a context
  manager per addon), and after each flow event triggers an `update` event
  too, all for the three or four addons that handle anything per request.
  `HookTable` looks each event's handlers up once and calls just those, with
  the same error policy as mitmproxy (`safecall`: an addon error is logged
  and the next handler runs; `AddonHalt` stops the chain). `update` is only
  triggered when an addon handles it. The addon set of `record` is fixed, and
  any change through `add`/`remove`/`clear` drops the table anyway.
* Debug-only checks (`skip_debug_checks`): mitmproxy type-checks every field
  of every request and response it creates (`MessageData.__post_init__`) and
  looks `PYTEST_CURRENT_TEST` up in the environment for every task it
  creates (several per request), both only `if __debug__`, i.e. unless Python
  runs with `-O`. `record` turns off just these two, as `-O` would, without
  turning off the assertions of every other library in the process.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks, http
from mitmproxy.utils import asyncio_utils

logger = logging.getLogger("mitmproxy.addonmanager")  # where mitmproxy logs addon errors


class HookTable(addonmanager.AddonManager):
    """An `AddonManager` that finds the handlers of each event once, not on every event."""

    def __init__(self, master: Any) -> None:
        super().__init__(master)  # type: ignore[no-untyped-call]
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    # -- the table ----------------------------------------------------------------

    def _table(self, event: hooks.Hook) -> list[Callable[..., Any]]:
        handlers = self._handlers.get(event.name)
        if handlers is None:
            # _iter_hooks is mitmproxy's own lookup (children, module attributes
            # named like a hook, non-callable handlers), in chain order.
            handlers = [func for top in self.chain for _, func in self._iter_hooks(top, event)]
            self._handlers[event.name] = handlers
        return handlers

    def register(self, addon: Any) -> Any:
        self._handlers.clear()
        return super().register(addon)  # type: ignore[no-untyped-call]

    def add(self, *addons: Any) -> None:
        self._handlers.clear()
        super().add(*addons)  # type: ignore[no-untyped-call]
        self._handlers.clear()

    def remove(self, addon: Any) -> None:
        self._handlers.clear()
        super().remove(addon)  # type: ignore[no-untyped-call]

    def clear(self) -> None:
        self._handlers.clear()
        super().clear()  # type: ignore[no-untyped-call]

    # -- dispatch -----------------------------------------------------------------

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self._table(event)
        if handlers:
            await self._call(handlers, event.args())

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        handlers = self._table(event)
        args = event.args()
        if handlers:
            await self._call(handlers, args)
        if isinstance(args[0], flow.Flow):
            update = hooks.UpdateHook([args[0]])
            updaters = self._table(update)
            if updaters:
                await self._call(updaters, update.args())

    @staticmethod
    async def _call(handlers: list[Callable[..., Any]], args: list[Any]) -> None:
        for func in handlers:
            try:
                result = func(*args)
                # Hooks may be sync or async, as in mitmproxy.
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as exc:  # mitmproxy's policy: log, go on with the next addon
                logger.error(f"Addon error: {exc}", exc_info=True)


def _no_check(self: Any) -> None:
    pass


def _task_debug_info(task: Any, *, name: str, client: tuple[Any, ...] | None = None) -> None:
    # What mitmproxy records on a task for its debug views, without the
    # per-task environment lookup that only matters under pytest.
    task.created = time.time()
    task.set_name(name)
    if client:
        task.client = client


def skip_debug_checks() -> list[str]:
    """Turn off mitmproxy's `__debug__`-only per-request checks in this process.

    Returns what was turned off (a later mitmproxy that moved them is left alone).
    """
    done = []
    message_data: Any = http.MessageData
    if callable(getattr(message_data, "__post_init__", None)):
        message_data.__post_init__ = _no_check
        done.append("MessageData type checks")
    if callable(getattr(asyncio_utils, "set_task_debug_info", None)):
        asyncio_utils.set_task_debug_info = _task_debug_info
        done.append("task debug info lookups")
    return done
