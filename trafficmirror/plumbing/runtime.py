"""Process start-up tuning shared by the long-running commands: the garbage collector.

A full collection walks every object; with the modules a replay loads that
stops the event loop for milliseconds, and everything due meanwhile goes out
that late. `settle_memory()` freezes what start-up allocated, so later
collections only look at what the work itself allocates, and lets the
youngest generation grow before a collection (with Python's default threshold
the collector runs every few dozen records). Call it once, after setting up
and before the first piece of work; the figures are in the docs
(docs/benchmarks.md).
"""

from __future__ import annotations

import gc

#: Objects allocated (net) before the garbage collector looks at the youngest generation.
GC_YOUNG_THRESHOLD = 10_000


def settle_memory() -> None:
    """`gc.collect()`, `gc.freeze()`, and a young-generation threshold of `GC_YOUNG_THRESHOLD`."""
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_THRESHOLD, young), older, oldest)
