"""The transforms row's chain hot and cold: CPU per request alone and among a record's work.

Builds the transforms row's traffic (replaying/transforms.py) and runs the
row's whole transforms chain over it (after one pass that learns the
correlated IDs and signs the tokens, as the first records of a replay do):
alone in a tight loop, where its code and data stay in the CPU's caches and
branch predictors, and interleaved with the rest of what the replayer does for
a record in process (decode, build the request, compare, build and encode the
result), as it runs in a replay. The chain's cost is the difference with the
same loop without it. Configurations are interleaved and repeated; medians of
process CPU time per request. The figures move with the machine's load:
compare rows of one run only.

    python bench/transform_cold.py [--records 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from replaying.traffic import BASE_US, RESPONSE_BODY
from replaying.transforms import CONNECTIONS, make_auth_event, write_transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replayer.comparing.noise import Rules  # noqa: E402 (this checkout's replayer)
from replayer.comparing.responses import ResponseView, compare_exchange  # noqa: E402
from replayer.models import Outcome, Response, Target  # noqa: E402
from replayer.results.build import build_result, result_message  # noqa: E402
from replayer.sending.request import build_request  # noqa: E402
from replayer.transforming.loader import parse_text  # noqa: E402
from replayer.transforming.stage import Transformer  # noqa: E402
from schemas.codec import Codec  # noqa: E402

TARGET = Target.parse("http://127.0.0.1:1")
HEADERS = (("Content-Type", "application/json"), ("Content-Length", str(len(RESPONSE_BODY))))
RAW_HEADERS = tuple((k.encode(), v.encode()) for k, v in HEADERS)
#: Distinct exchanges cycled through: the first CONNECTIONS create the orders.
EXCHANGES = 2 * CONNECTIONS


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000, help="requests per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per configuration")
    args = parser.parse_args()
    codec, result_codec, rules = Codec(), Codec("replay_result"), Rules()
    raw = [codec.encode(make_auth_event(i, BASE_US + i * 100, "a")).value for i in range(EXCHANGES)]
    keys = [f"10.1.2.3:{40000 + i % CONNECTIONS}".encode() for i in range(EXCHANGES)]
    events = [codec.decode_exchange(value) for value in raw]
    requests = [build_request(event, TARGET) for event in events]
    text = write_transforms(Path(tempfile.mkdtemp(prefix="tm-cold-"))).read_text()
    transformer = Transformer(parse_text(text, "bench", {}), TARGET)
    chain = transformer.shadow
    assert chain is not None
    response = Response(200, HEADERS, RESPONSE_BODY)

    def record_work(index: int) -> None:
        """What the replayer does for a record besides transforms, in process."""
        event = codec.decode_exchange(raw[index])
        build_request(event, TARGET)
        shadow = ResponseView.of(200, RAW_HEADERS, RESPONSE_BODY)
        differences = compare_exchange(event, shadow, rules)
        result = build_result(
            event,
            topic="bench-auth",
            partition=0,
            offset=index,
            target=TARGET.origin,
            sent_us=BASE_US,
            shadow=shadow,
            shadow_latency_s=0.001,
            differences=differences,
            run_id="bench",
        )
        result_message("bench-auth", result, result_codec)

    async def loop(count: int, transforms: bool, work: bool, first: int = CONNECTIONS) -> None:
        span = EXCHANGES - first
        for n in range(count):
            index = first + n % span
            if work:
                record_work(index)
            request = requests[index]
            if transforms:
                prepared = transformer.prepare(chain, keys[index], events[index], "shadow")
                request = await prepared.before(request)
                prepared.after(Outcome(request, response, None, 0.0, 0.0))
            else:
                Outcome(request, response, None, 0.0, 0.0)

    asyncio.run(loop(EXCHANGES, True, False, first=0))  # learn the IDs, sign the tokens
    gc.collect()
    gc.freeze()  # as the replayer does once started (trafficmirror.plumbing.runtime)

    def measure(transforms: bool, work: bool) -> float:
        start = time.process_time()
        asyncio.run(loop(args.records, transforms, work))
        return (time.process_time() - start) / args.records * 1e6

    configs = {
        "loop": (False, False),
        "chain": (True, False),
        "work": (False, True),
        "work+chain": (True, True),
    }
    results: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, (transforms, work) in configs.items():
            results[name].append(measure(transforms, work))
    med = {name: statistics.median(values) for name, values in results.items()}
    labels = {
        "loop": "the loop alone",
        "chain": "the loop + the chain (hot)",
        "work": "the loop + the record's other work",
        "work+chain": "the loop + the record's other work + the chain (cold)",
    }
    print("| per request | CPU median (min..max) |")
    print("| --- | ---: |")
    for name, values in results.items():
        print(f"| {labels[name]} | {med[name]:.1f} ({min(values):.1f}..{max(values):.1f}) us |")
    hot = med["chain"] - med["loop"]
    cold = med["work+chain"] - med["work"]
    print(f"| the chain alone, hot | {hot:.1f} us |")
    print(f"| the chain among the record's work | {cold:.1f} us ({cold / hot:.1f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
