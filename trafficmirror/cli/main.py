"""The `trafficmirror` command line: the click group, its commands, the entry point.

Only wiring lives here: the group and its global options, one `add_command`
per command (each defined in its own `cmd_*` module, the session family in
`session.py`), and `main()`. Commands parse and validate their options (bad
input is a `click.BadParameter`, one line, exit code 2), then import the
library code they run, lazily, so `--help` stays fast and never loads
mitmproxy or the replayer. Errors the package raises on purpose
(`TrafficMirrorError`) become one line on stderr; nothing the user can cause
prints a traceback. `--config` (`config_file`) fills every command's defaults
from a TOML file, and `help_sections` lays out every command's `--help`.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from trafficmirror import __version__
from trafficmirror.cli.cmd_demo import demo
from trafficmirror.cli.cmd_dev import dev_kafka, kafka_config
from trafficmirror.cli.cmd_export import export
from trafficmirror.cli.cmd_import import import_
from trafficmirror.cli.cmd_inspect import inspect
from trafficmirror.cli.cmd_monitor import monitor
from trafficmirror.cli.cmd_record import record
from trafficmirror.cli.cmd_replay import replay
from trafficmirror.cli.cmd_report import report
from trafficmirror.cli.cmd_worker import worker
from trafficmirror.cli.config_file import config_option, describe_source, param_named
from trafficmirror.cli.help_sections import install
from trafficmirror.cli.session import session
from trafficmirror.plumbing.errors import TrafficMirrorError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trafficmirror")
@config_option
@click.option("-v", "--verbose", count=True, help="Show debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """Record live HTTP traffic into Kafka and replay it to shadow services.

    A recorder (mitmproxy reverse proxy) writes every exchange as an Avro event to
    a Kafka topic without ever slowing the live path; replayer workers consume the
    topic and re-send the traffic to a shadow service. Run `trafficmirror demo` to
    see the whole pipeline on an in-memory broker.
    """
    from trafficmirror.plumbing import logs

    logs.setup(verbose, quiet)


for command in (record, worker, replay, report, inspect, dev_kafka, kafka_config, demo, session):
    cli.add_command(command)
for command in (export, import_):
    cli.add_command(command)
cli.add_command(monitor)
install(cli)


# -- entry point --------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"trafficmirror: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one line per error, meaningful exit codes."""
    try:
        cli.main(args=argv, prog_name="trafficmirror", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        message = exc.format_message().replace("\n", " ")
        if isinstance(exc, click.BadParameter):
            param = exc.param or param_named(exc.ctx, exc.param_hint)  # type: ignore[arg-type]
            source = describe_source(exc.ctx, param)
            if source is not None:
                message = f"{source}: {message}"
        if type(exc).__name__ == "NoArgsIsHelpError":  # click 8.2+: the whole help
            message = "missing command"
        _fail(message + hint, exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except TrafficMirrorError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
