"""The Python hook: loaded at start, called per request; skips and failures never crash."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from replayer.models import OutgoingRequest, Skipped
from replayer.transforming.hook import HookRequest, HookStep, load_hook
from tests.replayer.transforming.helpers import context, event, request_of
from trafficmirror.plumbing.errors import ConfigError

HOOKS = """
import asyncio

CALLS = []

def tag(request):
    CALLS.append((request.meta.exchange_id, request.meta.role, request.meta.key))
    request.set_header("X-Hooked", request.meta.authority)
    request.remove_header("Accept")
    request.path = request.path + "?hooked=1"
    return request

def same(request):
    return request

def skip_posts(request):
    return None if request.method == "POST" else request

def boom(request):
    raise ValueError("bad input " + request.path)

def wrong(request):
    return {"method": "GET"}

async def later(request):
    await asyncio.sleep(0)
    request.body = b'{"hooked": true}'
    return request

NOT_CALLABLE = 3
"""


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "myhooks.py").write_text(HOOKS)
    monkeypatch.chdir(tmp_path)  # the working directory is on the path, last
    monkeypatch.delitem(sys.modules, "myhooks", raising=False)
    return "myhooks"


def call(spec: str, request: OutgoingRequest | None = None, **kw: object) -> OutgoingRequest:
    ev = event(**kw)
    step = HookStep(spec, load_hook(spec))
    return asyncio.run(step.apply(request or request_of(ev), context(ev)))


def test_the_hook_changes_the_request_and_reads_the_metadata(hooks: str) -> None:
    out = call(f"{hooks}:tag", authority="shop.example.com", exchange_id="ex-h1")
    assert out.header("X-Hooked") == "shop.example.com"
    assert out.header("Accept") is None
    assert out.path == "/?hooked=1"
    assert sys.modules[hooks].CALLS == [("ex-h1", "shadow", b"c1")]


def test_an_unchanged_request_is_the_same_object(hooks: str) -> None:
    ev = event()
    request = request_of(ev)
    step = HookStep(f"{hooks}:same", load_hook(f"{hooks}:same"))
    assert asyncio.run(step.apply(request, context(ev))) is request
    assert step.name == f"hook:{hooks}:same"


def test_a_coroutine_hook_is_awaited(hooks: str) -> None:
    assert call(f"{hooks}:later", method="POST").body == b'{"hooked": true}'


def test_none_skips_the_record(hooks: str) -> None:
    assert call(f"{hooks}:skip_posts").method == "GET"
    with pytest.raises(Skipped) as caught:
        call(f"{hooks}:skip_posts", method="POST")
    assert caught.value.reason == "transform"
    assert str(caught.value) == f"hook:{hooks}:skip_posts skipped it"


def test_an_exception_skips_the_record_and_the_first_of_each_kind_is_logged(
    hooks: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ev = event()
    step = HookStep(f"{hooks}:boom", load_hook(f"{hooks}:boom"))
    for _ in range(3):
        with pytest.raises(Skipped) as caught:
            asyncio.run(step.apply(request_of(ev), context(ev)))
        assert caught.value.reason == "transform"
        assert str(caught.value) == f"hook:{hooks}:boom raised ValueError: bad input /"
    assert caplog.text.count("the transform hook raised ValueError") == 1
    assert "Traceback" in caplog.text  # the first one with where it happened


def test_anything_but_a_request_or_none_skips_the_record(hooks: str) -> None:
    with pytest.raises(Skipped, match="returned dict"):
        call(f"{hooks}:wrong")


def test_a_file_path_works_too(tmp_path: Path) -> None:
    path = tmp_path / "file_hook.py"
    path.write_text("def f(request):\n    request.method = 'HEAD'\n    return request\n")
    assert call(f"{path}:f").method == "HEAD"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "no_colon: give package.module:function or path/to/file.py:function"),
        ("nowhere_module_x:f", "nowhere_module_x:f: no module named 'nowhere_module_x'"),
        ("myhooks:missing", "myhooks:missing: myhooks has no 'missing'"),
        ("myhooks:NOT_CALLABLE", "myhooks:NOT_CALLABLE: myhooks.NOT_CALLABLE is not callable"),
        ("broken_hooks:f", "broken_hooks:f: importing broken_hooks failed: ZeroDivisionError"),
        ("/no/such/hooks.py:f", "/no/such/hooks.py:f: no file /no/such/hooks.py"),
    ],
)
def test_a_bad_hook_is_a_one_line_error_at_start(
    hooks: str, tmp_path: Path, spec: str, message: str
) -> None:
    (tmp_path / "broken_hooks.py").write_text("1 / 0\n")
    with pytest.raises(ConfigError) as caught:
        load_hook(spec)
    assert str(caught.value).startswith(message), str(caught.value)


def test_hook_request_header_helpers() -> None:
    request = HookRequest("GET", "/", [("A", "1"), ("x", "2"), ("X", "3")], b"", None)  # type: ignore[arg-type]
    request.set_header("X", "9")
    assert request.headers == [("A", "1"), ("X", "9")]
    request.set_header("New", "n")
    assert request.header("new") == "n"
    request.remove_header("a")
    assert request.headers == [("X", "9"), ("New", "n")]
