"""The transform options of `worker` and `replay range`, as one click decorator.

The command gets them as a single `transforms` argument, a validated
`replayer.transforming.config.TransformOptions`: the rules file
(`--transforms`), the rewrite flags (`--set-header`, `--remove-header`), the
target map (`--target-map`) and the hook (`--transform-module`). Everything is
checked before anything connects: a bad file is one line naming the file and
line, a missing `${ENV}` variable or an unimportable hook one line naming the
option (exit 2). It also makes `--target` optional when a target map is given.
Put it below `sender_options`. Like the rest of the CLI, it imports the
replayer only when a command runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

_PARAMS = ("transforms_file", "set_headers", "remove_headers", "target_maps", "transform_module")


def transform_options(func: F) -> F:
    """Options that change what is sent and where (worker, replay range).

    The command gets them as one `transforms` argument, a
    `replayer.transforming.config.TransformOptions`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _PARAMS}
        kwargs["transforms"] = build_transforms(**values)
        if kwargs.get("target") is None and not kwargs["transforms"].target_map:
            raise click.BadParameter(
                "give the shadow's URL (or --target-map AUTHORITY=URL)", param_hint="--target"
            )
        return func(*args, **kwargs)

    options = [
        click.option(
            "--transforms",
            "transforms_file",
            metavar="FILE",
            envvar="TRAFFICMIRROR_TRANSFORMS",
            help="YAML file of transforms (see docs/authenticated.md): target_map, rewrite "
            "rules (set/remove headers, regex replace in path, query, header values and text "
            "bodies, JSON set/delete in request bodies, each with a name and optional "
            "conditions), credentials (OAuth2 client credentials, JWT re-sign), correlate "
            "(IDs the shadow created) and hook. Rules apply in file order, before the flags "
            "below (env TRAFFICMIRROR_TRANSFORMS).",
        ),
        click.option(
            "--set-header",
            "set_headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            help="Send header NAME with VALUE instead of the recorded ones (every occurrence "
            "replaced, added when absent); repeatable. ${ENV_VAR} in VALUE is the environment "
            "variable (a missing one is an error at start), ${file:/path} or a VALUE of "
            "@/path the file's contents, re-read when the file changes (a rotated Kubernetes "
            "Secret). Example: 'Authorization: Bearer ${SHADOW_TOKEN}'.",
        ),
        click.option(
            "--remove-header",
            "remove_headers",
            multiple=True,
            metavar="NAME",
            help="Do not send header NAME (every occurrence); repeatable.",
        ),
        click.option(
            "--target-map",
            "target_maps",
            multiple=True,
            metavar="AUTHORITY=URL",
            help="Send the records recorded for AUTHORITY (the recorded Host, compared without "
            "case; without a port any port, with one that port only) to URL; repeatable, one "
            "shadow per service of a shared topic. Records of other authorities go to "
            "--target when it is given and are skipped as skipped-unmapped-authority when it "
            "is not. Each record is checked against the original host of its own URL.",
        ),
        click.option(
            "--transform-module",
            metavar="MODULE:FUNCTION",
            envvar="TRAFFICMIRROR_TRANSFORM_MODULE",
            help="A Python function (package.module:function, or path/to/file.py:function) "
            "called with each outgoing request (method, path, headers, body, meta: the "
            "recorded event's metadata) after the other transforms; it returns the request, "
            "changed or not, or None to skip it. An exception skips the record as "
            "skipped-transform (counted, the first of each kind logged) (env "
            "TRAFFICMIRROR_TRANSFORM_MODULE).",
        ),
    ]
    result: Any = wrapper
    for option in reversed(options):
        result = option(result)
    return cast(F, result)


def build_transforms(
    *,
    transforms_file: str | None = None,
    set_headers: tuple[str, ...] = (),
    remove_headers: tuple[str, ...] = (),
    target_maps: tuple[str, ...] = (),
    transform_module: str | None = None,
) -> Any:
    """TransformOptions from the transform options; bad input raises click.BadParameter."""
    from contextlib import contextmanager
    from dataclasses import replace

    from replayer.transforming.config import RemoveHeader, Rule, SetHeader, TransformOptions
    from replayer.transforming.hook import load_hook
    from replayer.transforming.loader import check_header_name, load_file
    from replayer.transforming.targets import parse_mapping
    from replayer.transforming.values import parse_value
    from trafficmirror.plumbing.errors import ConfigError

    @contextmanager
    def reported(hint: str) -> Iterator[None]:
        try:
            yield
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None

    options = TransformOptions()
    if transforms_file is not None:
        with reported("--transforms"):
            options = load_file(transforms_file)
    rules = list(options.rules)
    for spec in set_headers:
        name, sep, value = spec.partition(":")
        name = name.strip()
        if not sep:
            raise click.BadParameter(f"{spec!r} is not 'NAME: VALUE'", param_hint="--set-header")
        with reported("--set-header"):
            check_header_name(name, name)
            parsed = parse_value(value.strip(), name)
        rules.append(Rule(f"set-header:{name}", SetHeader(name, parsed), origin="--set-header"))
    for name in remove_headers:
        name = name.strip()
        with reported("--remove-header"):
            check_header_name(name, name)
        rules.append(Rule(f"remove-header:{name}", RemoveHeader(name), origin="--remove-header"))
    mappings = list(options.target_map)
    for spec in target_maps:
        with reported("--target-map"):
            mappings.append(parse_mapping(spec, spec))
    hook = transform_module or options.hook
    if hook is not None:
        with reported("--transform-module" if transform_module else "--transforms"):
            load_hook(hook)
    return replace(options, rules=tuple(rules), target_map=tuple(mappings), hook=hook)
