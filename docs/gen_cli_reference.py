"""Write docs/reference/cli.md: every command's `--help`, taken from the click commands.

The help texts are the user documentation of the commands and their options,
so the reference is generated from them rather than written twice. It walks
the `trafficmirror` group through click's own `list_commands`/`get_command`
(so it does not depend on how the CLI is split into modules, nor on commands
being loaded lazily) and writes each command's help as click prints it, at a
fixed width, so the page is the same on every machine.
`tests/docs/test_cli_reference.py` fails while the committed page is stale.

    python docs/gen_cli_reference.py          # rewrite docs/reference/cli.md
    python docs/gen_cli_reference.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

OUTPUT = Path(__file__).resolve().parent / "reference" / "cli.md"
PROG = "trafficmirror"
# Wide enough for the option column, narrow enough for the page's code blocks.
WIDTH = 88

HEADER = """\
# CLI reference

Every command's `--help`, generated from the click commands by
`docs/gen_cli_reference.py`; do not edit this page by hand. Every option that
has an environment variable says so in its help (`env TRAFFICMIRROR_...`).
"""


def _walk(ctx: click.Context) -> Iterator[click.Context]:
    """`ctx` and the context of every visible subcommand below it, depth first."""
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(click.Context(sub, info_name=name, parent=ctx, **sub.context_settings))


def render() -> str:
    """The reference page, as Markdown."""
    from trafficmirror.cli.main import cli

    # As click makes them, with each command's context_settings (-h for help).
    settings = {**cli.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    root = click.Context(cli, info_name=PROG, **settings)
    contexts = list(_walk(root))
    lines = [HEADER, "| command | what it does |", "| --- | --- |"]
    for ctx in contexts[1:]:
        anchor = ctx.command_path.replace(" ", "-")
        summary = ctx.command.get_short_help_str(limit=200).replace("|", "\\|")
        lines.append(f"| [`{ctx.command_path}`](#{anchor}) | {summary} |")
    lines.append("")
    for ctx in contexts:
        help_text = ctx.command.get_help(ctx).rstrip()
        lines += ["", f"## `{ctx.command_path}`", "", "```text", help_text, "```"]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        current = OUTPUT.read_text() if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python docs/gen_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
