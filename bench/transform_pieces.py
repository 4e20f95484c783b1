"""Where the transforms row's cost goes: CPU per record of each part, in one process.

Builds the transforms row's recorded traffic (replaying/transforms.py) and,
for each configuration, runs over it what the replayer does per record
without Kafka or the network: build the request; then the row's transforms
file split in parts (its five rewrite rules alone, the JWT re-sign alone,
the correlation alone, each with the stage's per-record work: context,
chain, observing the response), and the whole file with the comparison
(against build + comparison without transforms). Configurations are
interleaved and repeated; medians of process CPU time per record. A part's
cost is its row minus "build"; the figures move with the machine's load, so
compare rows of one run only.

    python bench/transform_pieces.py [--records 5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
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
from replayer.sending.request import build_request  # noqa: E402
from replayer.transforming.loader import parse_text  # noqa: E402
from replayer.transforming.stage import Transformer  # noqa: E402
from schemas.codec import Codec  # noqa: E402

TARGET = Target.parse("http://127.0.0.1:1")
HEADERS = (("Content-Type", "application/json"), ("Content-Length", str(len(RESPONSE_BODY))))


def parts(text: str) -> dict[str, str]:
    """The transforms file, and its sections alone."""
    rules, _, rest = text.partition("credentials:")
    credentials, _, correlate = rest.partition("correlate:")
    return {
        "rules": rules,
        "jwt": "credentials:" + credentials,
        "correlate": "correlate:" + correlate,
        "all": text,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="records per configuration")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each configuration")
    args = parser.parse_args()
    codec = Codec()
    events = []
    for i in range(args.records):
        encoded = codec.encode(make_auth_event(i, BASE_US + i * 100, "a"))
        key = f"10.1.2.3:{40000 + i % CONNECTIONS}".encode()
        events.append((key, codec.decode(encoded.value)))
    files = parts(write_transforms(Path(tempfile.mkdtemp(prefix="tm-pieces-"))).read_text())
    rules = Rules()

    def run(transformer: Transformer | None, compare: bool) -> float:
        async def loop() -> None:
            chain = transformer.shadow if transformer else None
            for key, event in events:
                request = build_request(event, TARGET)
                equal: set[tuple[str, str]] | tuple[()] = ()
                if transformer is not None and chain is not None:
                    prepared = transformer.prepare(chain, key, event, "shadow")
                    request = await prepared.before(request)
                    response = Response(200, HEADERS, RESPONSE_BODY)
                    prepared.after(Outcome(request, response, None, 0.0, 0.0))
                    equal = prepared.context.equal_values
                if compare:
                    shadow = ResponseView.of(200, HEADERS, RESPONSE_BODY)
                    compare_exchange(event, shadow, rules, equal_values=equal)

        start = time.process_time()
        asyncio.run(loop())
        return (time.process_time() - start) / len(events) * 1e6

    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name in ("build", "build+compare", *files):
            if name.startswith("build"):
                value = run(None, name == "build+compare")
            else:
                value = run(
                    Transformer(parse_text(files[name], "bench", {}), TARGET), name == "all"
                )
            results.setdefault(name, []).append(value)
    labels = {
        "build": "build the request",
        "build+compare": "build + compare (no transforms)",
        "rules": "build + the five rewrite rules",
        "jwt": "build + JWT re-sign",
        "correlate": "build + correlation",
        "all": "build + the whole file + compare",
    }
    print("| per record | CPU median (min..max) |")
    print("| --- | ---: |")
    for name, values in results.items():
        print(
            f"| {labels[name]} | {statistics.median(values):.1f} "
            f"({min(values):.1f}..{max(values):.1f}) us |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
