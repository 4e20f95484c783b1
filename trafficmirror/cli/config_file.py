"""`--config FILE` / TRAFFICMIRROR_CONFIG: every command's options from one TOML file.

A table per command (`[worker]`, `[record]`, `[replay.range]`, `[session.start]`)
holds that command's options, keyed by the long flag without dashes
(`bootstrap-servers`, `redact-header`), `X` for `-X`, or the parameter name
(`kafka_properties`); keys at the top level apply to every command
that has that option (the Kafka connection, the topic). The file becomes
click's `default_map`, so a flag on the command line and an environment
variable win over it, and it wins over the built-in defaults. The file is
checked as a whole when it is loaded, before any command runs: an unknown
table or key, or a value of the wrong type, is one line naming the file and
the key (exit code 2); values a command checks itself (URLs, rules) name the
file and key when they fail (`describe_source`).
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

import click

ENV = "TRAFFICMIRROR_CONFIG"

#: Meta key: where the map came from, kept on the root context (`describe_source`).
_FILE_KEY = "_config_file"


class ConfigFileError(click.UsageError):
    """A config file that cannot be used: one line naming the file and the key."""


def _keys(command: click.Command) -> dict[str, click.Parameter]:
    """Every key a table may use for `command`: long flags without dashes, parameter names."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None or param.hidden:
            continue
        if param.is_eager and param.expose_value is False:  # --help, --version
            continue
        keys[param.name] = param
        keys[param.name.replace("_", "-")] = param
        # Not the secondary flag of a --x/--no-x pair: `x = false` says it.
        longs = [opt[2:] for opt in param.opts if opt.startswith("--")]
        for key in longs or [opt.lstrip("-") for opt in param.opts]:  # -X: key X
            keys[key] = param
    return keys


def _check_value(path: str, where: str, param: click.Parameter, value: Any) -> Any:
    """The value as click will take it from the default_map, or ConfigFileError."""
    if isinstance(value, dict):
        raise ConfigFileError(f"{path}: {where} is a table, not a value")
    many = param.multiple or (param.nargs != 1)
    if many and not isinstance(value, list):
        value = [value]
    if not many and isinstance(value, list):
        raise ConfigFileError(f"{path}: {where} takes one value, not a list")
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        raise ConfigFileError(f"{path}: {where} takes a list of plain values")
    try:
        param.type_cast_value(click.Context(click.Command("config")), value)
    except click.BadParameter as exc:
        raise ConfigFileError(f"{path}: {where}: {exc.format_message()}") from None
    return value


def _section(
    path: str, name: str, command: click.Command, table: dict[str, Any], shared: dict[str, Any]
) -> dict[str, Any]:
    """The default_map of `command` from its table (`table`) and the top-level keys."""
    keys = _keys(command)
    out: dict[str, Any] = {}
    for key, value in shared.items():
        if key in keys:
            param = keys[key]
            out[param.name or key] = _check_value(path, key, param, value)
    subcommands = command.commands if isinstance(command, click.Group) else {}
    for key, value in table.items():
        where = f"[{name}] {key}" if name else key
        inner = f"{name}.{key}" if name else key
        if key in subcommands and isinstance(value, dict):
            out[key] = _section(path, inner, subcommands[key], value, shared)
        elif isinstance(value, dict) and key not in keys:
            raise ConfigFileError(f"{path}: [{inner}] is not a command")
        elif key in keys:
            param = keys[key]
            out[param.name or key] = _check_value(path, where, param, value)
        else:
            raise ConfigFileError(
                f"{path}: {where} is not an option of '{name or 'trafficmirror'}'"
            )
    for sub_name, command_of in subcommands.items():
        if sub_name not in out:
            out[sub_name] = _section(path, f"{name}.{sub_name}".strip("."), command_of, {}, shared)
    return out


def load(path: str, root: click.Group) -> dict[str, Any]:
    """The default_map for `root` from the TOML file at `path`; ConfigFileError when bad."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigFileError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigFileError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
    root_keys = set(_keys(root))
    shared: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    every_key = _every_key(root)
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in root.commands:
                raise ConfigFileError(f"{path}: [{key}] is not a command")
            tables[key] = value
        elif key in root_keys:
            tables[key] = value
        elif key in every_key:
            shared[key] = value
        else:
            raise ConfigFileError(f"{path}: {key} is not an option of any command")
    result = _section(path, "", root, tables, shared)
    result[_FILE_KEY] = path
    return result


def _every_key(command: click.Command) -> set[str]:
    keys = set(_keys(command))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            keys |= _every_key(sub)
    return keys


def config_option(func: Any) -> Any:
    """The group's `--config` option: loads the file into `ctx.default_map`, eagerly."""

    def apply(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value and not ctx.resilient_parsing and isinstance(ctx.command, click.Group):
            ctx.default_map = load(os.path.expanduser(value), ctx.command)
        return value

    return click.option(
        "--config",
        "config_path",
        envvar=ENV,
        metavar="FILE",
        is_eager=True,
        expose_value=False,
        callback=apply,
        help="TOML file of options: a table per command ([worker], [record], "
        "[replay.range], ...), top-level keys for every command; flags and "
        f"environment variables win over it (env {ENV}).",
    )(func)


def describe_source(ctx: click.Context | None, param: click.Parameter | None) -> str | None:
    """'FILE: [section] key' when `param`'s value came from the config file, else None."""
    if ctx is None or param is None or param.name is None:
        return None
    from click.core import ParameterSource

    if ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT_MAP:
        return None
    root = ctx.find_root()
    path = (root.default_map or {}).get(_FILE_KEY)
    if path is None:
        return None
    section = " ".join(ctx.command_path.split()[1:]).replace(" ", ".")
    key = next((o[2:] for o in param.opts if o.startswith("--")), param.name)
    return f"{path}: [{section}] {key}" if section else f"{path}: {key}"


def param_named(ctx: click.Context | None, hint: str | None) -> click.Parameter | None:
    """The parameter of `ctx`'s command that has the flag `hint` (e.g. '--target')."""
    if ctx is None or not hint:
        return None
    for param in ctx.command.params:
        if hint.strip("'\"") in getattr(param, "opts", []):
            return param
    return None
