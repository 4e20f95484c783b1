"""Reading YAML nodes with their line numbers, for the transforms file's loader.

`Nodes` wraps what `replayer.transforming.loader` needs of PyYAML's composed
node tree: mappings (duplicate and unknown keys refused), lists, scalars as
written (YAML's typing aside), values that may be secrets (`values.parse_value`),
regular expressions, JSON paths and unique names. Every failure is a
`ConfigError` of one line that starts with `FILE:LINE:`, the line taken from
the node's start mark.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn

import yaml

from replayer.transforming.config import Value
from replayer.transforming.values import parse_value
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.jsonpath import JsonPattern


def empty(node: yaml.Node) -> bool:
    """True for a YAML null written as nothing, `~` or `null`."""
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:null"
        and node.style is None
    )


class Nodes:
    """The node helpers (see the module doc); `source` names the file in messages."""

    def __init__(self, source: str, environ: Mapping[str, str] | None) -> None:
        self.source = source
        self.environ = environ
        self.loader: yaml.SafeLoader | None = None
        #: Names given so far, with where: a name is used once in a file.
        self.names: dict[str, str] = {}

    def where(self, node: yaml.Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        raise ConfigError(f"{self.where(node)}: {message}")

    def mapping(self, node: yaml.Node, what: str, keys: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value)")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key of {what}")
            if key in out:
                self.fail(key_node, f"{key!r} is given twice in {what}")
            if keys and key not in keys:
                self.fail(key_node, f"unknown key {key!r} in {what} (known: {', '.join(keys)})")
            out[key] = value_node
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str:
        """A scalar as written (YAML's typing aside: `yes` stays the text yes)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{what} must be a single value, not a list or mapping")
        if node.tag == "tag:yaml.org,2002:null" and node.style is None:
            self.fail(node, f"{what} is empty")
        return str(node.value)

    def strings(self, node: yaml.Node, what: str) -> list[str]:
        if isinstance(node, yaml.SequenceNode):
            return [self.scalar(item, what) for item in node.value]
        return [self.scalar(node, what)]

    def flag(self, node: yaml.Node, what: str) -> bool:
        value = self.construct(node)
        if not isinstance(value, bool):
            self.fail(node, f"{what} must be true or false")
        return value

    def construct(self, node: yaml.Node) -> Any:
        assert self.loader is not None  # noqa: S101 (set by read)
        return self.loader.construct_object(node, deep=True)

    def value(self, node: yaml.Node, what: str) -> Value:
        try:
            return parse_value(self.scalar(node, what), self.where(node), self.environ)
        except ConfigError:
            raise
        except Exception as exc:  # pragma: no cover - parse_value raises ConfigError
            self.fail(node, str(exc))

    def regex(self, node: yaml.Node, what: str) -> re.Pattern[str]:
        text = self.scalar(node, what)
        try:
            return re.compile(text)
        except re.error as exc:
            self.fail(node, f"bad regular expression {text!r}: {exc}")

    def named(self, node: yaml.Node, fields: dict[str, yaml.Node], what: str) -> str:
        if "name" not in fields:
            self.fail(node, f"{what} has no name")
        name = self.scalar(fields["name"], "name")
        if name in self.names:
            self.fail(fields["name"], f"the name {name!r} is already used at {self.names[name]}")
        if any(c in name for c in "\r\n\x00") or len(name) > 200:
            self.fail(fields["name"], "a name is one line of at most 200 characters")
        self.names[name] = self.where(fields["name"])
        return name

    def items(self, node: yaml.Node | None, what: str) -> list[yaml.Node]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
            return []
        return self.sequence(node, what)

    def need(self, node: yaml.Node, fields: dict[str, yaml.Node], what: str, *keys: str) -> None:
        for key in keys:
            if key not in fields:
                self.fail(node, f"{what} needs {key}")

    def json_path(self, node: yaml.Node) -> JsonPattern:
        text = self.scalar(node, "a JSON path")
        try:
            pattern = JsonPattern.parse(text)
        except ConfigError as exc:
            self.fail(node, str(exc))
        if not pattern.tokens:
            self.fail(node, f"{text!r} names the whole body (use a path below $)")
        return pattern

    def optional(self, fields: dict[str, yaml.Node], key: str) -> str | None:
        if key not in fields or empty(fields[key]):
            return None
        return self.scalar(fields[key], key)
