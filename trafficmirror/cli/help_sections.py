"""`--help` in sections: a command's own options first, each shared option group after it.

The option-group modules (`common`, `kafka`, `comparison`, `guard`, ...) each
declare their options in one decorator. To know which options a decorator
declares, `SECTIONS` applies it to an empty function and reads the click
parameters it added, so an option added to a group later lands in its section
without any change here or in the commands. Options no group declares are the
command's own and come first; the Kafka connection and security options come
last. `install` gives every command of the tree this help layout (it swaps in a
subclass of the command's own class, so nothing else about a command changes);
`main.py` calls it once. Only click and the option-group modules are imported,
never the library code, so `--help` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: Title of the section of the options no group declares.
OWN = "Options"


def _decorators() -> list[tuple[str, list[Decorator]]]:
    """(section title, the decorators whose options it lists), in the order shown."""
    from trafficmirror.cli import common, kafka
    from trafficmirror.cli.amplify import amplify_options
    from trafficmirror.cli.comparison import comparison_options
    from trafficmirror.cli.guard import guardrail_options
    from trafficmirror.cli.pace import pace_options
    from trafficmirror.cli.recording import recorder_extra_options
    from trafficmirror.cli.safety import safety_options
    from trafficmirror.cli.selection import selection_options
    from trafficmirror.cli.transform import transform_options

    return [
        ("Sending to the shadow", [common.sender_options]),
        ("Selection", [selection_options()]),
        ("Pace", [pace_options(default_speed="max")]),
        ("Capacity tests (amplification)", [amplify_options]),
        ("Safety", [safety_options]),
        ("Transforms", [transform_options]),
        ("Comparison", [comparison_options]),
        ("Guardrails", [guardrail_options]),
        ("Redaction, client TLS, filter, memory", [recorder_extra_options]),
        ("Health and metrics", [common.metrics_options]),
        ("Kafka connection", [common.kafka_options, common.kafka_connection_options]),
        ("Kafka security (TLS, SASL)", [kafka.kafka_security_options]),
    ]


def _declared(decorator: Decorator) -> list[str]:
    """Names of the click parameters `decorator` adds to a function."""

    def empty() -> None:  # pragma: no cover - never called
        """Placeholder the decorator is applied to."""

    decorated = decorator(empty)
    return [param.name for param in getattr(decorated, "__click_params__", []) if param.name]


@functools.cache
def section_of() -> dict[str, str]:
    """Parameter name -> section title; a name in several groups goes to the first listed."""
    from trafficmirror.cli.kafka import kafka_security_options

    titles: dict[str, str] = {}
    security = set(_declared(kafka_security_options))
    for title, decorators in _decorators():
        for decorator in decorators:
            for name in _declared(decorator):
                if name in security and not title.startswith("Kafka security"):
                    continue
                titles.setdefault(name, title)
    return titles


def sections(command: click.Command, ctx: click.Context) -> Iterator[tuple[str, list[Any]]]:
    """(title, params) of `command` in the order shown; the command's own options first."""
    titles = section_of()
    order = [OWN] + [title for title, _ in _decorators()]
    grouped: dict[str, list[click.Parameter]] = {title: [] for title in order}
    for param in command.get_params(ctx):
        grouped[titles.get(param.name or "", OWN)].append(param)
    for title in order:
        if grouped[title]:
            yield title, grouped[title]


class SectionedHelp(click.Command):
    """Mixin: `format_options` writes one help section per option group."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, params in sections(self, ctx):
            rows = [record for p in params if (record := p.get_help_record(ctx)) is not None]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        if isinstance(self, click.Group):
            self.format_commands(ctx, formatter)


def install(command: click.Command) -> None:
    """Give `command` and every subcommand the sectioned help."""
    if not isinstance(command, SectionedHelp):
        cls = type(command)
        command.__class__ = type(cls.__name__, (SectionedHelp, cls), {})
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            install(sub)
