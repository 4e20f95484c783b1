"""Custom resources against their CRD's own schema, offline, as the API server would check them.

kubernetes-validate knows only the Kubernetes API's kinds. The mesh mirror
examples add Istio's VirtualService and Gateway API's HTTPRoute: each is
checked here against the openAPIV3Schema of its CRD, copied from the project's
release into .ci/crd-schemas/ (source and version in each file). Like the API
server: the schema's defaults are filled in first, then the structure is
validated (jsonschema; unknown fields rejected, where the API server would
prune them silently and hide a typo), then the CRD's CEL rules
(`x-kubernetes-validations`) are evaluated with cel-python. Transition rules
(`oldSelf`) need an old object and are skipped. Also: a mirror rule's target is
a Service of the same build, on a port it has.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from deploy_common import Report

SCHEMA_DIR = Path(__file__).resolve().parent / "crd-schemas"


@cache
def vendored() -> dict[tuple[str, str], dict[str, Any]]:
    """The vendored schemas by (apiVersion, kind)."""
    out = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        out[(doc["apiVersion"], doc["kind"])] = doc
    return out


def _close(node: Any) -> None:
    """additionalProperties: false wherever the schema lists properties and keeps nothing else."""
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


@cache
def _validator(api_version: str, kind: str) -> Any:
    import jsonschema

    schema = copy.deepcopy(vendored()[(api_version, kind)]["schema"])
    _close(schema)
    # apiVersion, kind and metadata are checked by the API server itself, not the CRD.
    schema["properties"].update(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": {}}
    )
    return jsonschema.Draft202012Validator(schema)


def apply_defaults(schema: dict[str, Any], value: Any) -> None:
    """Fill in the schema's `default`s in place, as the API server does before validating."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(schema["items"], item)


@cache
def _program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_failures(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """The messages of the CEL rules `value` breaks (evaluated at each node, defaults filled in)."""
    import celpy

    out = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: only meaningful on an update
        result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        if isinstance(result, Exception) or not bool(result):
            why = rule.get("message") or rule["rule"]
            if isinstance(result, Exception):
                why += f" (could not evaluate: {result})"
            out.append(f"{path or '<root>'}: {why}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                out.extend(cel_failures(sub, value[name], f"{path}.{name}" if path else name))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out.extend(cel_failures(schema["items"], item, f"{path}[{i}]"))
    return out


def check_crd_objects(report: Report, name: str, objs: list[dict[str, Any]]) -> None:
    """Each object of a vendored kind against its CRD schema and CEL rules."""
    for obj in objs:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        if key not in vendored():
            continue
        doc = vendored()[key]
        label = f"{name}: {key[1].lower()}/{obj['metadata']['name']}"
        value = copy.deepcopy(obj)
        apply_defaults(doc["schema"], value)
        errors = sorted(_validator(*key).iter_errors(value), key=lambda e: list(e.path))
        problems = [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors]
        if not problems:  # CEL rules assume the structure is right
            problems = cel_failures(doc["schema"], value)
        report.check(
            not problems,
            f"{label} valid against its CRD schema and CEL rules ({doc['source'].split(',')[0]}, "
            "unknown fields rejected)",
            "; ".join(problems[:5]),
        )


def _service_port(services: dict[str, dict[str, Any]], host: str, port: Any) -> str | None:
    """Why `host:port` is not a Service of this build (None if it is). `host` may be
    the short name or `<name>.<namespace>[.svc[.cluster.local]]`."""
    service = services.get(host.split(".")[0])
    if service is None:
        return f"no Service {host.split('.')[0]!r} in this build"
    ports = [p.get("port") for p in (service.get("spec") or {}).get("ports") or []]
    if port is not None and port not in ports:
        return f"Service {host.split('.')[0]!r} has no port {port} (it has {ports})"
    return None


def check_mirror_targets(report: Report, name: str, objs: list[dict[str, Any]]) -> None:
    """Every mirror rule (VirtualService mirror, HTTPRoute RequestMirror) points at a
    Service of this build, on a port the Service has."""
    services = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Service"}
    for obj in objs:
        targets: list[tuple[str, Any]] = []
        spec = obj.get("spec") or {}
        if obj.get("kind") == "VirtualService":
            for route in spec.get("http") or []:
                for mirror in [route.get("mirror"), *(route.get("mirrors") or [])]:
                    if mirror:
                        dest = mirror.get("destination", mirror)
                        targets.append((dest["host"], (dest.get("port") or {}).get("number")))
        elif obj.get("kind") == "HTTPRoute":
            for rule in spec.get("rules") or []:
                for f in rule.get("filters") or []:
                    # Whatever the filter's type says (its CEL rules check that).
                    ref = (f.get("requestMirror") or {}).get("backendRef")
                    if ref:
                        targets.append((ref["name"], ref.get("port")))
        else:
            continue
        label = f"{name}: {obj['kind'].lower()}/{obj['metadata']['name']}"
        if not targets:
            report.fail(f"{label} has no mirror rule")
            continue
        problems = [p for host, port in targets if (p := _service_port(services, host, port))]
        report.check(
            not problems,
            f"{label} mirrors to a Service of this build "
            f"({', '.join(f'{h}:{p}' for h, p in targets)})",
            "; ".join(problems),
        )
