"""The embedded proxy's hook dispatch and debug switches (recorder.lean)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest
from mitmproxy import exceptions, hooks, master, options
from mitmproxy.test import tflow

from recorder.lean import HookTable


class Probe:
    """Records which of its hooks ran, in a shared list."""

    def __init__(self, name: str, calls: list[str], fail: str | None = None) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail
        self.addons: list[Any] = []

    def response(self, flow: Any) -> None:
        self.calls.append(f"{self.name}.response")
        if self.fail == "error":
            raise RuntimeError("addon bug")
        if self.fail == "halt":
            raise exceptions.AddonHalt()


class AsyncProbe:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def response(self, flow: Any) -> None:
        await asyncio.sleep(0)
        self.calls.append("async.response")

    def update(self, flows: Any) -> None:
        self.calls.append("async.update")


def table_with(*addons: Any) -> HookTable:
    proxy: Any = master.Master(options.Options())
    proxy.addons = HookTable(proxy)
    proxy.addons.add(*addons)
    return proxy.addons  # type: ignore[no-any-return]


def run(coro: Any) -> None:
    asyncio.run(coro)


def test_handlers_in_chain_order_children_included() -> None:
    async def body() -> None:
        calls: list[str] = []
        parent = Probe("a", calls)
        parent.addons = [Probe("a-child", calls)]
        table = table_with(parent, Probe("b", calls))
        await table.trigger_event(_response())
        assert calls == ["a.response", "a-child.response", "b.response"]

    run(body())


def test_error_is_logged_and_the_next_handler_runs(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        calls: list[str] = []
        table = table_with(Probe("a", calls, fail="error"), Probe("b", calls))
        with caplog.at_level(logging.ERROR, "mitmproxy.addonmanager"):
            await table.trigger_event(_response())
        assert calls == ["a.response", "b.response"]
        assert "Addon error: addon bug" in caplog.text

    run(body())


def test_addon_halt_stops_the_chain() -> None:
    async def body() -> None:
        calls: list[str] = []
        table = table_with(Probe("a", calls, fail="halt"), Probe("b", calls))
        await table.trigger_event(_response())
        assert calls == ["a.response"]

    run(body())


def test_async_handlers_awaited_and_update_only_when_handled() -> None:
    async def body() -> None:
        calls: list[str] = []
        table = table_with(Probe("a", calls))
        await table.handle_lifecycle(_response())
        assert calls == ["a.response"]  # nobody handles update: not triggered
        table.add(AsyncProbe(calls))  # a change of addons rebuilds the table
        calls.clear()
        await table.handle_lifecycle(_response())
        assert calls == ["a.response", "async.response", "async.update"]
        table.remove(table.get("asyncprobe"))
        calls.clear()
        await table.handle_lifecycle(_response())
        assert calls == ["a.response"]

    run(body())


def test_skip_debug_checks_in_a_fresh_process() -> None:
    # It changes mitmproxy for the whole process, so not in the test process.
    code = (
        "from mitmproxy import http\n"
        "from recorder.lean import skip_debug_checks\n"
        "def make():\n"
        "    return http.Request('h', 1, b'GET', b'http', b'', b'/', b'HTTP/1.1',"
        " http.Headers(), b'', None, 'not a float', None)\n"
        "try:\n"
        "    make()\n"
        "except TypeError:\n"
        "    print('checked')\n"
        "print(skip_debug_checks())\n"
        "make()\n"
        "print('unchecked')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == [
        "checked",
        "['MessageData type checks', 'task debug info lookups']",
        "unchecked",
    ]


def _response() -> hooks.Hook:
    from mitmproxy.proxy.layers.http import HttpResponseHook

    return HttpResponseHook(tflow.tflow(resp=True))


_LOOKUPS = """
import typing
from mitmproxy import http, optmanager
from mitmproxy.proxy.layers.http import HttpResponseHook, HttpRequestHeadersHook
from mitmproxy.test import tflow
from recorder.lean import cheaper_lookups

headers = http.Headers([
    (b"Host", b"a.example"), (b"X-Dup", b"1"), (b"x-dup", b"2"),
    (b"Content-Length", b"12"), (b"X-Odd", b"\\xff\\xfe"), (b"set-cookie", b"a=1"),
])
names = ["host", "HOST", b"host", "x-dup", b"X-DUP", "content-length", "missing", b"missing",
         "x-odd", "Set-Cookie", ""]

def lookups():
    out = []
    for name in names:
        out.append(("get_all", name, headers.get_all(name)))
        out.append(("get", name, headers.get(name), headers.get(name, "dflt")))
        out.append(("in", name, name in headers))
        try:
            out.append(("getitem", name, headers[name]))
        except KeyError as exc:
            out.append(("getitem", name, "KeyError", exc.args))
    for bad in (None, 3):
        for op in (lambda: headers.get_all(bad), lambda: headers.get(bad), lambda: bad in headers):
            try:
                out.append(("odd", repr(bad), op()))
            except Exception as exc:
                out.append(("odd", repr(bad), type(exc).__name__))
    opts = optmanager.OptManager()
    opts.add_option("s", str, "x", "a string")
    opts.add_option("n", typing.Optional[int], None, "a number")
    opts.add_option("l", typing.Sequence[str], ["a"], "a list")
    opts.update(n=3)
    first = opts.l
    first.append("changed in place")
    out.append(("opts", opts.s, opts.n, opts.l, opts.l is opts.l))
    flow = tflow.tflow(resp=True)
    for hook in (HttpResponseHook(flow), HttpRequestHeadersHook(flow)):
        out.append(("args", type(hook).__name__, [id(x) for x in hook.args()] == [id(flow)]))
    return out

before = lookups()
print(cheaper_lookups())
after = lookups()
print("same" if before == after else f"DIFFERENT\\n{before}\\n{after}")
"""


def test_cheaper_lookups_answer_as_mitmproxy_does() -> None:
    # It changes mitmproxy for the whole process, so not in the test process.
    out = subprocess.run(
        [sys.executable, "-c", _LOOKUPS], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["['option reads', 'hook arguments', 'header lookups']", "same"]
