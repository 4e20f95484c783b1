"""The comparison options of `worker` and `replay range`, as one click decorator.

The command gets them as a single `comparison` argument, a validated
`replayer.results.stage.ComparisonOptions`; bad input is a `click.BadParameter`
naming the option (one line, exit code 2). Like the rest of the CLI, it imports
the replayer only when a command runs, so `--help` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])


_COMPARISON_PARAMS = (
    "rules_file",
    "ignore_paths",
    "ignore_headers",
    "compare_headers",
    "unordered_paths",
    "ignore_array_order",
    "replacements",
    "tolerances",
    "baseline",
    "routes",
    "run_id",
    "no_results",
    "proto_descriptor_set",
    "proto_reflection",
)


def comparison_options(func: F) -> F:
    """Options of everything that compares replays with production (worker, replay range).

    The command gets them as one `comparison` argument, a validated
    `replayer.results.stage.ComparisonOptions`; bad input is a `click.BadParameter`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _COMPARISON_PARAMS}
        kwargs["comparison"] = build_comparison(**values)
        return func(*args, **kwargs)

    json_path = "JSONPATH"
    options = [
        click.option(
            "--rules",
            "rules_file",
            envvar="TRAFFICMIRROR_RULES",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Noise rules file, TOML (.toml) or JSON (see the README); the options below "
            "add to it (env TRAFFICMIRROR_RULES).",
        ),
        click.option(
            "--ignore-path",
            "ignore_paths",
            multiple=True,
            metavar=json_path,
            help="JSON body path whose differences are noise, e.g. '$.timestamp', "
            "'$.items[*].updated_at', '$..etag'; repeatable.",
        ),
        click.option(
            "--ignore-header",
            "ignore_headers",
            multiple=True,
            metavar="NAME",
            help="Response header whose differences are noise (glob: 'x-build-*'); repeatable. "
            "Date, Server, Set-Cookie, request ids, Content-Length ... are never compared.",
        ),
        click.option(
            "--compare-header",
            "compare_headers",
            multiple=True,
            metavar="NAME",
            help="Compare this header although it is on the default ignore list; repeatable.",
        ),
        click.option(
            "--unordered",
            "unordered_paths",
            multiple=True,
            metavar=json_path,
            help="JSON array compared without regard to order, e.g. '$.tags'; repeatable.",
        ),
        click.option(
            "--ignore-array-order",
            is_flag=True,
            help="Compare every JSON array without regard to order.",
        ),
        click.option(
            "--replace",
            "replacements",
            multiple=True,
            metavar="REGEX=>REPL",
            help="Regex substitution applied to both bodies (text) before comparing, e.g. "
            "'[0-9a-f]{32}=><hash>'; repeatable, applied in order.",
        ),
        click.option(
            "--tolerance",
            "tolerances",
            multiple=True,
            metavar="N|N%",
            help="Numbers in JSON bodies this close are equal: absolute (0.001) or relative "
            "(1%); give both to accept either.",
        ),
        click.option(
            "--baseline",
            envvar="TRAFFICMIRROR_BASELINE",
            metavar="URL",
            help="A second copy of production: every request is also sent there, and "
            "differences production also has with it count as noise, not regressions. "
            "Events of record --mirror (no production response) are compared with its "
            "answers instead (env TRAFFICMIRROR_BASELINE).",
        ),
        click.option(
            "--route",
            "routes",
            multiple=True,
            metavar="PATTERN",
            help="Endpoint pattern results are grouped by, tried before the built-in "
            "templating (ids, UUIDs, numbers become {id}): 'GET /articles/{slug}'; repeatable.",
        ),
        click.option(
            "--run-id",
            envvar="TRAFFICMIRROR_RUN_ID",
            default="",
            metavar="ID",
            help="Name of this replay session, stored in every result; replays of the same "
            "traffic against another build should use another one (report --run picks one).",
        ),
        click.option(
            "--no-results",
            is_flag=True,
            help="Compare (for the summary and metrics) but write nothing to <topic>.results.",
        ),
        click.option(
            "--proto-descriptor-set",
            envvar="TRAFFICMIRROR_PROTO_DESCRIPTOR_SET",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Protobuf descriptors of the gRPC services (protoc --include_imports "
            "--descriptor_set_out=FILE): gRPC messages are compared field by field; without "
            "it, by bytes (env TRAFFICMIRROR_PROTO_DESCRIPTOR_SET).",
        ),
        click.option(
            "--proto-reflection",
            envvar="TRAFFICMIRROR_PROTO_REFLECTION",
            metavar="URL",
            help="Instead of --proto-descriptor-set: ask this gRPC server (http:// h2c or "
            "https://, e.g. the shadow) for its services' descriptors by server reflection, "
            "once at start; needs the grpc extra (env TRAFFICMIRROR_PROTO_REFLECTION).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return cast(F, wrapper)


def build_comparison(
    *,
    rules_file: str | None,
    ignore_paths: tuple[str, ...],
    ignore_headers: tuple[str, ...],
    compare_headers: tuple[str, ...],
    unordered_paths: tuple[str, ...],
    ignore_array_order: bool,
    replacements: tuple[str, ...],
    tolerances: tuple[str, ...],
    baseline: str | None,
    routes: tuple[str, ...],
    run_id: str,
    no_results: bool,
    proto_descriptor_set: str | None = None,
    proto_reflection: str | None = None,
) -> Any:
    """ComparisonOptions from the comparison options; bad input raises click.BadParameter."""
    from replayer.comparing.endpoints import Router
    from replayer.comparing.noise import build_rules
    from replayer.results.stage import ComparisonOptions
    from trafficmirror.plumbing.errors import ConfigError

    # Each kind on its own first, so an error names the option it came from.
    checks: list[tuple[str, dict[str, Any]]] = [
        ("--rules", {"rules_file": rules_file}),
        ("--ignore-path", {"ignore_paths": ignore_paths}),
        ("--unordered", {"unordered_paths": unordered_paths}),
        ("--replace", {"replacements": replacements}),
        ("--tolerance", {"tolerances": tolerances}),
    ]
    for hint, given in checks:
        try:
            build_rules(**given)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None
    if len(tolerances) > 2:
        raise click.BadParameter(
            "give at most one absolute and one relative tolerance", param_hint="--tolerance"
        )
    rules = build_rules(
        rules_file,
        ignore_paths=ignore_paths,
        unordered_paths=unordered_paths,
        ignore_array_order=ignore_array_order,
        ignore_headers=ignore_headers,
        compare_headers=compare_headers,
        replacements=replacements,
        tolerances=tolerances,
    )
    try:
        Router(routes)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--route") from None
    if baseline is not None:
        from replayer.models import Target

        try:
            Target.parse(baseline)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--baseline") from None
    protos = None
    if proto_descriptor_set is not None and proto_reflection is not None:
        raise click.BadParameter(
            "give --proto-descriptor-set or --proto-reflection, not both",
            param_hint="--proto-reflection",
        )
    if proto_reflection is not None:
        from replayer.comparing.reflection import descriptors_by_reflection

        try:
            protos = descriptors_by_reflection(proto_reflection)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--proto-reflection") from None
    if proto_descriptor_set is not None:
        from replayer.comparing.protodesc import ProtoDescriptors

        try:
            protos = ProtoDescriptors.load(proto_descriptor_set)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--proto-descriptor-set") from None
    return ComparisonOptions(
        rules=rules,
        baseline=baseline,
        routes=routes,
        run_id=run_id,
        write_results=not no_results,
        protos=protos,
    )
