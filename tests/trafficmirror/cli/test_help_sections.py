"""`--help` in sections: the command's own options first, Kafka connection and security last."""

from __future__ import annotations

import re
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tests.support import run_cli
from tests.trafficmirror.cli.test_bad_input import commands, flag, options
from trafficmirror.cli import comparison, help_sections
from trafficmirror.cli.main import cli


def sections(text: str) -> dict[str, list[str]]:
    """Section title -> the option lines (the first line of each option) under it."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            found[current] = []
        elif current is not None and line.startswith("  -"):
            found[current].append(line.strip())
    return found


def declared(line: str) -> set[str]:
    """The flags an option line declares: '-b, --bootstrap-servers HOST  help' -> {-b, --b...}."""
    declaration = re.split(r"\s{2,}", line)[0]
    return {part.split()[0] for part in declaration.split(", ")}


def test_worker_help_shows_its_own_options_first_and_kafka_last() -> None:
    result = run_cli(["worker", "--help"])
    assert result.returncode == 0, result.stderr
    found = sections(result.stdout)
    titles = list(found)
    assert titles[0] == "Options" and titles[-2:] == [
        "Kafka connection",
        "Kafka security (TLS, SASL)",
    ]
    assert found["Options"][0].startswith("-g, --group")
    assert len(found["Options"]) <= 5  # group, protocol, drain timeout, help (+ a new one)
    expected = {
        "Sending to the shadow": "--target",
        "Selection": "--filter",
        "Pace": "--speed",
        "Safety": "--allow-original-host",
        "Transforms": "--set-header",
        "Comparison": "--ignore-path",
        "Guardrails": "--max-error-rate",
        "Health and metrics": "--metrics-port",
        "Kafka connection": "-b, --bootstrap-servers",
        "Kafka security (TLS, SASL)": "--sasl-password",
    }
    for title, option in expected.items():
        assert any(line.startswith(option) for line in found[title]), (title, found[title])
    lines = result.stdout.splitlines()
    target = next(n for n, line in enumerate(lines) if line.strip().startswith("--target "))
    kafka = lines.index("Kafka connection:")
    assert target < 55 < kafka  # was line 95 of 210, after every Kafka option
    bootstrap = "\n".join(lines[kafka : kafka + 6])
    assert "required" in bootstrap and "TRAFFICMIRROR_BOOTSTRAP_SERVERS" in bootstrap


@pytest.mark.parametrize(
    ("path", "command"), [pytest.param(p, c, id=" ".join(p)) for p, c in commands(cli)]
)
def test_every_option_is_shown_once_and_kafka_comes_last(
    path: tuple[str, ...], command: click.Command
) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    found = sections(result.output)
    shown = [line for lines in found.values() for line in lines]
    for option in options(command):
        name = flag(option)
        hits = [line for line in shown if name in declared(line)]
        assert len(hits) == 1, (name, hits)
    titles = [t for t in found if t != "Commands"]
    kafka = [t for t in titles if t.startswith("Kafka ")]
    assert titles[len(titles) - len(kafka) :] == kafka


def test_an_option_added_to_a_group_lands_in_its_section(monkeypatch: pytest.MonkeyPatch) -> None:
    original = comparison.comparison_options

    def extended(func: Any) -> Any:
        return click.option("--new-noise-knob", help="Added later.")(original(func))

    monkeypatch.setattr(comparison, "comparison_options", extended)
    help_sections.section_of.cache_clear()
    try:

        @click.command()
        @click.option("--own", help="The command's own.")
        @extended
        def command(**kwargs: Any) -> None:
            """A command with an option group."""

        help_sections.install(command)
        found = sections(CliRunner().invoke(command, ["--help"]).output)
        assert found["Options"][0].startswith("--own")
        assert any(line.startswith("--new-noise-knob") for line in found["Comparison"])
    finally:
        help_sections.section_of.cache_clear()
