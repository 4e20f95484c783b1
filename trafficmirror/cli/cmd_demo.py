"""`trafficmirror demo`: the whole pipeline on this machine, checked end to end.

Only the command's options live here; `trafficmirror.demo.run` (broker, sample
apps, recorder, workers, traffic) is imported when the command runs.
"""

from __future__ import annotations

import sys

import click


@click.command()
@click.option(
    "--requests",
    "-n",
    "requests",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="How many generated requests to send through the recorder.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Replayer workers in the consumer group.",
)
def demo(requests: int, workers: int) -> None:
    """Run the whole pipeline on this machine and check it end to end.

    Starts the in-memory broker, a sample app, the recorder in front of it, sends
    a burst of varied traffic, replays it with WORKERS workers to a sample shadow,
    prints what was recorded, replayed and received, and exits 0 only if every
    recorded exchange reached the shadow intact.
    """
    from trafficmirror.demo.run import run_demo

    sys.exit(run_demo(requests=requests, workers=workers))
