"""`--transforms FILE`: the YAML rules file, read into `TransformOptions`.

Top-level keys: `target_map` (AUTHORITY: URL), `rules` (rewrite rules, applied
in file order), `credentials`, `correlate` and `hook` (a module:function, as
`--transform-module`). Every rule, credential and correlation has a `name`
(unique in the file: results list them by name); a rule has exactly one
action (`set_header`, `remove_header`, `replace_path`, `replace_query`,
`replace_header`, `replace_body`, `json_set`, `json_delete`), optionally `when`
(method, path, path_glob, authority) and `apply_to` (shadow, baseline, both).
PyYAML's node marks give line numbers: anything wrong is one `ConfigError`
line naming the file and line (exit 2 in the CLI). docs/authenticated.md
has the format.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from replayer.transforming.config import (
    ROLES,
    Action,
    Condition,
    Correlate,
    Credential,
    JsonDelete,
    JsonSet,
    JwtResign,
    OAuth2ClientCredentials,
    RemoveHeader,
    Replace,
    Role,
    Rule,
    SetHeader,
    TargetMapping,
    TransformOptions,
)
from replayer.transforming.targets import authority_key, mapping
from replayer.transforming.yamlnodes import Nodes, empty
from trafficmirror.plumbing.errors import ConfigError

__all__ = ["MAX_FILE_BYTES", "check_header_name", "load_file", "parse_text"]

#: A rules file larger than this is refused (it is read whole, at start).
MAX_FILE_BYTES = 4 * 1024 * 1024

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers no rule may set, remove or rewrite, and why.
_RESERVED = {
    "host": "Host names the target (use target_map or --target)",
    "content-length": "Content-Length is computed for the body sent",
    "x-trafficmirror-replay": "X-Trafficmirror-Replay marks every replayed request",
}
_TOP = ("target_map", "rules", "credentials", "correlate", "hook")
_ACTIONS = (
    "set_header",
    "remove_header",
    "replace_path",
    "replace_query",
    "replace_header",
    "replace_body",
    "json_set",
    "json_delete",
)
_COMMON = ("name", "when", "apply_to")
_METHOD = re.compile(r"[A-Za-z]+")


def check_header_name(name: str, where: str) -> str:
    """`name` if rules may touch it; raises `ConfigError` naming `where`."""
    if not _TOKEN.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} is not a header name")
    reason = _RESERVED.get(name.lower())
    if reason is not None:
        raise ConfigError(f"{where}: a rule cannot change {name}: {reason}")
    return name


def load_file(path: str, environ: Mapping[str, str] | None = None) -> TransformOptions:
    """Read and check the rules file at `path`; raises `ConfigError` (one line)."""
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {size} bytes, more than a rules file may have")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_text(text, path, environ)


def parse_text(
    text: str, source: str, environ: Mapping[str, str] | None = None
) -> TransformOptions:
    """`TransformOptions` of a rules file's text; `source` names it in messages."""
    return _Reader(source, environ).read(text)


class _Reader(Nodes):
    """Reads the sections of a rules file (the node helpers are in `Nodes`)."""

    def read(self, text: str) -> TransformOptions:
        self.loader = yaml.SafeLoader(text)
        try:
            root = self.loader.get_single_node()
            if root is None:
                return TransformOptions(source=self.source)
            top = self.mapping(root, "the rules file", _TOP)
            options = TransformOptions(
                rules=tuple(self.rule(n) for n in self.items(top.get("rules"), "rules")),
                target_map=self.target_map(top.get("target_map")),
                credentials=tuple(
                    self.credential(n) for n in self.items(top.get("credentials"), "credentials")
                ),
                correlate=tuple(
                    self.correlate(n) for n in self.items(top.get("correlate"), "correlate")
                ),
                hook=self.scalar(top["hook"], "hook") if "hook" in top else None,
                source=self.source,
            )
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = exc.problem or exc.context or "not valid YAML"
            raise ConfigError(f"{self.source}{line}: {problem}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.source}: not valid YAML: {exc}") from None
        finally:
            self.loader.dispose()
        return options

    def target_map(self, node: yaml.Node | None) -> tuple[TargetMapping, ...]:
        if node is None:
            return ()
        entries = self.mapping(node, "target_map", ())
        out = []
        for authority, url_node in entries.items():
            out.append(mapping(authority, self.scalar(url_node, "a URL"), self.where(url_node)))
        return tuple(out)

    def condition(self, fields: dict[str, yaml.Node]) -> Condition:
        roles = ROLES
        if "apply_to" in fields:
            node = fields["apply_to"]
            given = self.scalar(node, "apply_to")
            if given not in ("shadow", "baseline", "both"):
                self.fail(node, f"apply_to is shadow, baseline or both, not {given!r}")
            roles = ROLES if given == "both" else frozenset((_role(given),))
        if "when" not in fields:
            return Condition(roles=roles)
        when = self.mapping(fields["when"], "when", ("method", "path", "path_glob", "authority"))
        methods = None
        if "method" in when:
            methods = frozenset(m.upper() for m in self.strings(when["method"], "method"))
            for method in methods:
                if not _METHOD.fullmatch(method):
                    self.fail(when["method"], f"{method!r} is not a method")
        if "path" in when and "path_glob" in when:
            self.fail(when["path_glob"], "give path (a regular expression) or path_glob, not both")
        path = None
        if "path" in when:
            path = self.regex(when["path"], "path")
        elif "path_glob" in when:
            path = re.compile(fnmatch.translate(self.scalar(when["path_glob"], "path_glob")))
        authorities = None
        if "authority" in when:
            keys = []
            for text in self.strings(when["authority"], "authority"):
                try:
                    host, port = authority_key(text)
                except ValueError:
                    self.fail(when["authority"], f"{text!r} has a bad port")
                keys.append((host, port))
            authorities = tuple(keys)
        return Condition(methods=methods, path=path, authorities=authorities, roles=roles)

    def rule(self, node: yaml.Node) -> Rule:
        fields = self.mapping(node, "a rule", _COMMON + _ACTIONS)
        name = self.named(node, fields, "a rule")
        actions = [key for key in fields if key in _ACTIONS]
        if len(actions) != 1:
            self.fail(
                node,
                f"rule {name!r} needs exactly one action ({', '.join(_ACTIONS)}), "
                f"has {len(actions)}",
            )
        kind = actions[0]
        action = self.action(kind, fields[kind])
        return Rule(name, action, self.condition(fields), self.where(node))

    def action(self, kind: str, node: yaml.Node) -> Action:
        if kind == "set_header":
            f = self.mapping(node, kind, ("name", "value"))
            self.need(node, f, kind, "name", "value")
            name = check_header_name(self.scalar(f["name"], "name"), self.where(f["name"]))
            return SetHeader(name, self.value(f["value"], "value"))
        if kind == "remove_header":
            return RemoveHeader(check_header_name(self.scalar(node, kind), self.where(node)))
        if kind == "json_delete":
            if isinstance(node, yaml.MappingNode):
                f = self.mapping(node, kind, ("path",))
                self.need(node, f, kind, "path")
                node = f["path"]
            return JsonDelete(self.json_path(node))
        if kind == "json_set":
            f = self.mapping(node, kind, ("path", "value"))
            self.need(node, f, kind, "path", "value")
            value_node = f["value"]
            value: Any = self.construct(value_node)
            if isinstance(value, str):
                value = self.value(value_node, "value")
            return JsonSet(self.json_path(f["path"]), value)
        where = kind.removeprefix("replace_")
        keys = ("name", "pattern", "with") if where == "header" else ("pattern", "with")
        f = self.mapping(node, kind, keys)
        self.need(node, f, kind, *keys)
        pattern = self.regex(f["pattern"], "pattern")
        replacement = self.scalar(f["with"], "with") if not empty(f["with"]) else ""
        try:
            pattern.sub(replacement, "")
        except (re.error, IndexError) as exc:
            self.fail(f["with"], f"bad replacement {replacement!r}: {exc}")
        if where != "body" and any(c in replacement for c in "\r\n\x00"):
            self.fail(f["with"], "the replacement holds CR, LF or NUL")
        header_name = None
        if where == "header":
            header_name = check_header_name(self.scalar(f["name"], "name"), self.where(f["name"]))
        return Replace(where, pattern, replacement, header_name)  # type: ignore[arg-type]

    def credential(self, node: yaml.Node) -> Credential:
        fields = self.mapping(node, "a credential", _COMMON + ("oauth2", "jwt_resign"))
        name = self.named(node, fields, "a credential")
        kinds = [key for key in ("oauth2", "jwt_resign") if key in fields]
        if len(kinds) != 1:
            self.fail(node, f"credential {name!r} needs exactly one of oauth2, jwt_resign")
        when = self.condition(fields)
        if kinds[0] == "oauth2":
            return Credential(name, self.oauth2(fields["oauth2"]), when, self.where(node))
        return Credential(name, self.jwt(fields["jwt_resign"]), when, self.where(node))

    def oauth2(self, node: yaml.Node) -> OAuth2ClientCredentials:
        keys = ("token_url", "client_id", "client_secret", "scope", "audience", "header")
        f = self.mapping(node, "oauth2", (*keys, "prefix", "client_auth"))
        self.need(node, f, "oauth2", "token_url", "client_id", "client_secret")
        token_url = self.scalar(f["token_url"], "token_url")
        if not token_url.startswith(("http://", "https://")):
            self.fail(f["token_url"], f"token_url {token_url!r} is not an http(s) URL")
        client_auth = self.optional(f, "client_auth") or "basic"
        if client_auth not in ("basic", "form"):
            self.fail(f["client_auth"], "client_auth is basic or form")
        return OAuth2ClientCredentials(
            token_url=token_url,
            client_id=self.value(f["client_id"], "client_id"),
            client_secret=self.value(f["client_secret"], "client_secret"),
            scope=self.optional(f, "scope"),
            audience=self.optional(f, "audience"),
            header=self.header(f),
            prefix=self.prefix(f),
            client_auth=client_auth,  # type: ignore[arg-type]
        )

    def jwt(self, node: yaml.Node) -> JwtResign:
        keys = ("algorithm", "key", "header", "prefix", "refresh_times")
        f = self.mapping(node, "jwt_resign", keys)
        self.need(node, f, "jwt_resign", "algorithm", "key")
        algorithm = self.scalar(f["algorithm"], "algorithm").upper()
        if algorithm not in ("HS256", "RS256", "ES256"):
            self.fail(f["algorithm"], f"algorithm is HS256, RS256 or ES256, not {algorithm!r}")
        refresh = self.flag(f["refresh_times"], "refresh_times") if "refresh_times" in f else False
        return JwtResign(
            algorithm=algorithm,  # type: ignore[arg-type]
            key=self.value(f["key"], "key"),
            header=self.header(f),
            prefix=self.prefix(f),
            refresh_times=refresh,
        )

    def header(self, fields: dict[str, yaml.Node]) -> str:
        name = self.optional(fields, "header") or "Authorization"
        where = self.where(fields["header"]) if "header" in fields else self.source
        return check_header_name(name, where)

    def prefix(self, fields: dict[str, yaml.Node]) -> str:
        if "prefix" not in fields or empty(fields["prefix"]):
            return "Bearer " if "prefix" not in fields else ""
        prefix = self.scalar(fields["prefix"], "prefix")
        if any(c in prefix for c in "\r\n\x00"):
            self.fail(fields["prefix"], "the prefix holds CR, LF or NUL")
        return prefix

    def correlate(self, node: yaml.Node) -> Correlate:
        sources = ("response_json", "response_header", "response_regex")
        fields = self.mapping(node, "a correlation", ("name", *sources))
        name = self.named(node, fields, "a correlation")
        given = [key for key in sources if key in fields]
        if len(given) != 1:
            self.fail(node, f"correlation {name!r} needs exactly one of {', '.join(sources)}")
        kind = given[0]
        value = fields[kind]
        where = self.where(node)
        if kind == "response_json":
            return Correlate(name, response_json=self.json_path(value), origin=where)
        if kind == "response_header":
            header = self.scalar(value, kind)
            if not _TOKEN.fullmatch(header):
                self.fail(value, f"{header!r} is not a header name")
            return Correlate(name, response_header=header.lower(), origin=where)
        pattern = self.regex(value, kind)
        if pattern.groups != 1:
            self.fail(value, f"response_regex needs exactly one group, has {pattern.groups}")
        return Correlate(name, response_regex=pattern, origin=where)


def _role(text: str) -> Role:
    return "shadow" if text == "shadow" else "baseline"
