"""Process start-up tuning shared by the long-running commands: the garbage collector.

A full collection walks every object; with the modules a replay loads it
stopped the loop for 18 ms, measured mid-replay (500/s), and everything due
meanwhile went out that late. `settle_memory()` freezes what start-up
allocated, so later collections only look at what the work itself allocates,
and lets the youngest generation grow before a collection (Python's default
of 700 objects made the collector run every few dozen records). Call it once,
after setting up and before the first piece of work; figures are in the docs
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
