"""The CLI: help on every command and option, one-line errors, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from trafficmirror.cli.main import cli


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


@pytest.mark.parametrize(
    ("path", "command"), _commands(cli), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_and_option_has_help(path: tuple[str, ...], command: click.Command) -> None:
    assert command.help, f"{' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts} has no help text"


def test_help_does_not_load_mitmproxy_or_kafka() -> None:
    code = (
        "import sys\n"
        "from trafficmirror.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('mitmproxy', 'confluent_kafka', 'aiohttp', 'fastavro')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "LOADED []" in result.stdout


#: What `--help` must never load: the libraries and packages a command runs.
HEAVY = (
    "mitmproxy",
    "confluent_kafka",
    "fastavro",
    "replayer",
    "recorder",
    # monitor.config is read for --threshold's help (plain data); the detectors are heavy.
    "monitor.run",
    "monitor.signatures",
    "libinjection",
    "interchange",
)


def test_help_of_the_group_and_every_command_loads_no_library_code() -> None:
    # One fresh interpreter walks the whole tree, group first: a module loaded
    # by importing the CLI shows on every line, one loaded by a command's help
    # from that command's line on.
    code = (
        "import contextlib, io, sys\n"
        "import click\n"
        "from trafficmirror.cli.main import cli\n"
        "def walk(group, prefix=()):\n"
        "    for name, command in sorted(group.commands.items()):\n"
        "        yield (*prefix, name)\n"
        "        if isinstance(command, click.Group):\n"
        "            yield from walk(command, (*prefix, name))\n"
        f"heavy = {HEAVY!r}\n"
        "for path in [(), *walk(cli)]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        cli.main([*path, '--help'], prog_name='trafficmirror', standalone_mode=False)\n"
        "    print(' '.join(path) or '(group)', [m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(_commands(cli)), result.stdout
    assert all(line.endswith(" []") for line in lines), result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--topic", "t", "--group", "g"], "--target"),
        (["worker", "-b", "x:1", "--topic", "t", "--group", "g", "--target", "ftp://x"], "http"),
        (
            ["record", "-b", "x:1", "--topic", "t", "--upstream", "http://a", "--listen", "a:b"],
            "HOST:PORT",
        ),
        (
            [
                "replay",
                "range",
                "-b",
                "x:1",
                "-t",
                "t",
                "--start-offset",
                "5",
                "--end-offset",
                "3",
                "--target",
                "http://a",
            ],
            "after end offset",
        ),
        (
            [
                "replay",
                "range",
                "-b",
                "x:1",
                "-t",
                "t",
                "--start-offset",
                "0",
                "--end-offset",
                "soon",
                "--target",
                "http://a",
            ],
            "neither an offset",
        ),
        (["inspect", "-t", "t", "-X", "oops"], "key=value"),
        (["report", "-b", "x:1", "-t", "t", "--since", "yesterday"], "--since"),
        (["report", "-b", "x:1", "-t", "t", "--since", "-1h", "--until", "-2h"], "not before"),
        (["report", "-b", "x:1", "-t", "t", "--html", "/no/such/dir/r.html"], "--html"),
        (
            [
                "replay",
                "range",
                "-b",
                "x:1",
                "-t",
                "t",
                "--start-offset",
                "0",
                "--target",
                "http://a",
                "--ignore-path",
                "timestamp",
                "--rules",
                "/no/such/rules.toml",
            ],
            "--rules",
        ),
        (
            [
                "worker",
                "-b",
                "x:1",
                "-t",
                "t",
                "-g",
                "g",
                "--target",
                "http://a",
                "--baseline",
                "http://b/v2",
            ],
            "--baseline",
        ),
        (
            [
                "worker",
                "-b",
                "x:1",
                "-t",
                "t",
                "-g",
                "g",
                "--target",
                "http://a",
                "--replace",
                "(=>x",
            ],
            "--replace",
        ),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trafficmirror", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
