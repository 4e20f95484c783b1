"""Developer tools: `trafficmirror dev-kafka` and `trafficmirror kafka-config`.

`dev-kafka` serves librdkafka's in-memory mock cluster on 127.0.0.1 for trials
and tests (no Kafka broker can be installed on a development machine);
`kafka-config` prints the librdkafka settings a client would get from the
shared Kafka options, secrets masked, without connecting. Both load the
plumbing only when they run.
"""

from __future__ import annotations

import sys

import click

from trafficmirror.cli.common import build_settings, kafka_cluster_options


@click.command("dev-kafka")
@click.option(
    "--partitions",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Partitions of each --topic given without :PARTITIONS. A topic a client creates by "
    "using it gets the mock's own 4 (librdkafka has no setting for that): name it with --topic.",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="NAME[:PARTITIONS]",
    help="Create this topic at start; repeatable.",
)
@click.option(
    "--brokers",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Number of mock brokers.",
)
def dev_kafka(partitions: int, topics: tuple[str, ...], brokers: int) -> None:
    """Start an IN-MEMORY, TEST-GRADE Kafka cluster (librdkafka's mock cluster).

    Prints `bootstrap.servers=<list>` as its first line on stdout, then runs until
    SIGINT/SIGTERM. It speaks the Kafka protocol on 127.0.0.1 but keeps nothing:
    all data is lost when it stops, it has no admin API (create topics with
    --topic; a topic a producer or consumer auto-creates always gets 4
    partitions) and no timestamp look-up. For trials and
    tests only; use a real Kafka cluster for anything else.
    """
    from trafficmirror.plumbing.devbroker import serve
    from trafficmirror.plumbing.errors import ConfigError

    try:
        sys.exit(serve(partitions, topics, brokers))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from None


@click.command("kafka-config")
@kafka_cluster_options
@click.option(
    "--client",
    type=click.Choice(["producer", "consumer", "admin"]),
    default="admin",
    show_default=True,
    help="Whose settings: the recorder's producer, a replayer's consumer, or the plain "
    "connection settings every client shares.",
)
def kafka_config(
    bootstrap_servers: str | None,
    kafka_properties: tuple[str, ...],
    kafka_config: str | None,
    client: str,
) -> None:
    """Print the effective librdkafka settings as key=value lines, secrets as ***.

    Takes the same Kafka options as every other command (-b, -X, --kafka-config,
    the TLS/SASL flags and their environment variables) and shows what a client
    would be configured with, after librdkafka accepted it (exit 2 if it does
    not). Nothing is sent to the cluster.
    """
    from trafficmirror.plumbing.kafka import effective_config

    settings = build_settings(bootstrap_servers, kafka_properties, kafka_config)
    from trafficmirror.plumbing.errors import ConfigError

    try:
        lines = effective_config(settings, client)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="Kafka settings") from None
    click.echo("\n".join(lines))
