"""docs/reference/cli.md is what docs/gen_cli_reference.py makes from the click commands.

The reference is generated from the commands' help texts; this test fails when
a command, an option or a help text changed without regenerating the page, and
checks that the page covers every command.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import click
import pytest

from trafficmirror.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "gen_cli_reference.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command_paths(group: click.Group, prefix: str) -> list[str]:
    ctx = click.Context(group, info_name=prefix)
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if command.hidden:
            continue
        paths.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            paths += _command_paths(command, f"{prefix} {name}")
    return paths


def test_committed_reference_is_current() -> None:
    generator = _generator()
    committed = generator.OUTPUT.read_text()
    assert committed == generator.render(), (
        "docs/reference/cli.md is stale: run `python docs/gen_cli_reference.py` and commit it"
    )


def test_reference_covers_every_command() -> None:
    committed = _generator().OUTPUT.read_text()
    paths = _command_paths(cli, "trafficmirror")
    assert "trafficmirror replay range" in paths and "trafficmirror session start" in paths
    for path in ["trafficmirror", *paths]:
        assert f"## `{path}`" in committed
        assert f"Usage: {path} [OPTIONS]" in committed


def test_check_mode_says_when_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --check is what a person runs before committing: 1 while stale, 0 once rewritten.
    generator = _generator()
    page = tmp_path / "reference" / "cli.md"
    page.parent.mkdir()
    page.write_text(generator.render().replace("Show debug logs.", "Show the debug logs."))
    monkeypatch.setattr(generator, "OUTPUT", page)
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
