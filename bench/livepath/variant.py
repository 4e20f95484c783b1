"""`trafficmirror record` with one or more changes made for a measurement: the variant rows.

    python bench/livepath/variant.py VARIANTS record -b ... -t ... --upstream ... --listen ...

runs the `record` command of this checkout after applying the changes named in
VARIANTS (comma-separated), so a candidate cut can be measured side by side
with `record` as it is, in the same run, before it is made in the code:

  nohook   the recorder's per-exchange work does nothing (mitmproxy's own cost)
  nosend   events are built and encoded but not handed to the producer
  defer    the event is built and sent after the response went to the client
           (the `response` hook schedules it with `loop.call_soon`)
  uvloop   the event loop is uvloop's
  gc       `settle_memory()` once the proxy runs (gc.freeze, young threshold)
  lookups  `recorder.lean.cheaper_lookups()` (options, hook arguments, headers;
           `record` itself does it since it was measured this way)
  timing   time the recorder's work per exchange and the garbage collector's
           pauses from the moment the proxy runs, wall clock and on-CPU (this
           thread's CPU time, which a busy machine does not inflate); the
           figures are logged at exit (`variant timing:` lines)

Only this process is changed; nothing here is part of the product.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LINES: list[str] = []


def _summary(name: str, values_ns: list[int], per: int) -> str:
    if not values_ns:
        return f"variant timing: {name}: none"
    values = sorted(values_ns)
    total = sum(values)
    return (
        f"variant timing: {name}: n={len(values)} per_exchange_us={total / max(per, 1) / 1000:.1f} "
        f"p50_us={values[len(values) // 2] / 1000:.1f} "
        f"p99_us={values[min(len(values) - 1, int(len(values) * 0.99))] / 1000:.1f} "
        f"max_us={values[-1] / 1000:.1f}"
    )


class _Span:
    """Wall-clock and on-CPU (this thread's) durations of one kind of work."""

    def __init__(self) -> None:
        self.wall: list[int] = []
        self.cpu: list[int] = []
        self._t0 = (0, 0)

    def begin(self) -> None:
        self._t0 = (time.perf_counter_ns(), time.thread_time_ns())

    def end(self) -> None:
        self.wall.append(time.perf_counter_ns() - self._t0[0])
        self.cpu.append(time.thread_time_ns() - self._t0[1])

    def clear(self) -> None:
        self.wall.clear()
        self.cpu.clear()


def _timed(span: _Span, func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return func(*args, **kwargs)
        finally:
            span.cpu.append(time.thread_time_ns() - c0)
            span.wall.append(time.perf_counter_ns() - t0)

    return wrapper


def _timing() -> None:
    import recorder.addon as addon
    import recorder.event as event
    import recorder.run as run
    from recorder.sink import KafkaSink
    from schemas.codec import Codec

    spans = {name: _Span() for name in ("record", "event", "encode", "send")}
    addon.Recorder._record = _timed(spans["record"], addon.Recorder._record)  # type: ignore[method-assign]
    # The addon's own name for it: the addon looks it up in its module per call.
    setattr(addon, "flow_to_event", _timed(spans["event"], event.flow_to_event))  # noqa: B010
    Codec.encode = _timed(spans["encode"], Codec.encode)  # type: ignore[method-assign]
    KafkaSink.send = _timed(spans["send"], KafkaSink.send)  # type: ignore[method-assign]
    pauses = {gen: _Span() for gen in (0, 1, 2)}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            pauses[info["generation"]].begin()
        else:
            pauses[info["generation"]].end()

    gc.callbacks.append(on_gc)

    # Count from the moment the proxy runs: start-up's collections are not the live path's.
    original = run.StartupCheck.running

    def running(self: Any) -> None:
        original(self)
        for span in [*spans.values(), *pauses.values()]:
            span.clear()

    run.StartupCheck.running = running  # type: ignore[method-assign]

    def report() -> None:
        n = len(spans["record"].wall)
        named = [*spans.items(), *((f"gc gen{g}", p) for g, p in pauses.items())]
        for name, span in named:
            _LINES.append(_summary(f"{name} wall", span.wall, n))
            _LINES.append(_summary(f"{name} cpu", span.cpu, n))
        for line in _LINES:
            print(line, file=sys.stderr, flush=True)

    atexit.register(report)


def _defer() -> None:
    import recorder.addon as addon

    def response(self: Any, flow: Any) -> None:
        asyncio.get_running_loop().call_soon(self._record, flow)

    addon.Recorder.response = response  # type: ignore[method-assign]


def _nohook() -> None:
    import recorder.addon as addon

    addon.Recorder._record = lambda self, flow: None  # type: ignore[method-assign]


def _nosend() -> None:
    from recorder.sink import KafkaSink

    KafkaSink.send = lambda self, *a, **k: True  # type: ignore[method-assign]


def _lookups() -> None:
    from recorder.lean import cheaper_lookups

    cheaper_lookups()


def _uvloop() -> None:
    import uvloop

    uvloop.install()


def _gc() -> None:
    import recorder.run as run
    from trafficmirror.plumbing.runtime import settle_memory

    original = run.StartupCheck.running

    def running(self: Any) -> None:
        original(self)
        settle_memory()

    run.StartupCheck.running = running  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {
    "nohook": _nohook,
    "nosend": _nosend,
    "defer": _defer,
    "uvloop": _uvloop,
    "gc": _gc,
    "lookups": _lookups,
    "timing": _timing,
}


def main() -> None:
    # The checkout this file is in, first: its code is what the variant measures
    # (run as a script, this folder would be first and a venv's install next).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    # `timing` last: it starts counting after what the others do at start-up
    # (gc's collection); `defer` looks `_record` up per call, so it is timed too.
    for name in sorted(names, key=lambda n: n == "timing"):
        VARIANTS[name]()
    os.environ.setdefault("TRAFFICMIRROR_BENCH_VARIANT", ",".join(names))
    from trafficmirror.cli.main import main as cli

    cli(sys.argv[2:])


if __name__ == "__main__":
    main()
