"""Checks of the deployment files that no schema expresses; run by .ci/validate-deploy.

Runs with the validation tools' own Python (PyYAML, jsonschema and the KEDA
models come from there), offline. Each subcommand prints one line per check,
`ok` or `FAIL`, and exits 1 if any failed:

* `discover K8S_DIR`: the kustomizations to build (every one that is not a
  Component), printed as paths relative to K8S_DIR; fails for a Component that
  no built kustomization uses, since nothing would ever validate it.
* `image DOCKERFILE README PYPROJECT DOCKERIGNORE`: the Dockerfile installs the
  package with the README's command, copies every package pyproject.toml lists
  (and .dockerignore does not drop one), runs as a non-root user, has a
  HEALTHCHECK and `trafficmirror` as its entrypoint.
* `compose FILE`: worker services stop more slowly than they drain.
* `k8s NAME=FILE...`: on each kustomize build output, KEDA objects against
  KEDA's CRD schema, and the cross-references that only fail on a cluster
  (selectors, named ports, generated ConfigMap names, grace periods).
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

# The worker's --drain-timeout when not given (see `trafficmirror worker --help`).
DEFAULT_DRAIN_TIMEOUT = 20.0
# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30.0
# Secrets the manifests expect to be created out of band (k8s/README.md says how).
EXTERNAL_SECRETS = {"trafficmirror-kafka"}
# Kinds checked here against their CRD schema rather than by kubernetes-validate.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


class Report:
    """Collects check results; one line each."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.failures = 0
        self.stream = stream

    def ok(self, message: str) -> None:
        print(f"  ok    {message}", file=self.stream)

    def fail(self, message: str) -> None:
        self.failures += 1
        print(f"  FAIL  {message}", file=self.stream)

    def check(self, passed: bool, message: str, problem: str = "") -> None:
        if passed:
            self.ok(message)
        else:
            self.fail(f"{message}: {problem}" if problem else message)

    def exit_code(self) -> int:
        return 1 if self.failures else 0


# --- k8s discovery -------------------------------------------------------------------

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _kustomizations(root: Path) -> dict[Path, dict[str, Any]]:
    found: dict[Path, dict[str, Any]] = {}
    for name in KUSTOMIZATION_NAMES:
        for path in sorted(root.rglob(name)):
            found[path.parent.resolve()] = yaml.safe_load(path.read_text()) or {}
    return found


def _references(directory: Path, doc: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """(field, directory) for every local directory a kustomization pulls in."""
    for field in ("resources", "components", "bases"):
        for entry in doc.get(field) or []:
            if isinstance(entry, str) and "://" not in entry:
                target = (directory / entry).resolve()
                if target.is_dir():
                    yield field, target


def discover(root: Path) -> int:
    # stdout is the build list (one directory a line); the checks go to stderr.
    report = Report(sys.stderr)
    docs = _kustomizations(root)
    components = {d for d, doc in docs.items() if doc.get("kind") == "Component"}
    entries = sorted(d for d in docs if d not in components)

    # Components reached from any entry point, through any depth of resources.
    used: set[Path] = set()
    seen: set[Path] = set()
    stack = list(entries)
    while stack:
        directory = stack.pop()
        if directory in seen or directory not in docs:
            continue
        seen.add(directory)
        for _field, target in _references(directory, docs[directory]):
            if target in components:
                used.add(target)
            stack.append(target)

    for component in sorted(components):
        rel = component.relative_to(root.resolve())
        report.check(
            component in used,
            f"component {rel} is used by an overlay that gets built",
            "no overlay lists it, so it is never validated",
        )
    for entry in entries:
        print(entry.relative_to(root.resolve()))
    return report.exit_code()


# --- image ---------------------------------------------------------------------------


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    if current:
        logical.append(current)
    result = []
    for entry in logical:
        instruction, _, args = entry.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def image(dockerfile: Path, readme: Path, pyproject: Path, dockerignore: Path) -> int:
    report = Report()
    instructions = _dockerfile_instructions(dockerfile.read_text())

    installs = [args for ins, args in instructions if ins == "RUN" and "pip install" in args]
    if len(installs) != 1:
        report.fail(
            f"{dockerfile.name} has exactly one `RUN pip install` step (found {len(installs)})"
        )
    else:
        command = installs[0]
        # The README may call pip through a path (.venv/bin/pip) and chain
        # commands after it, but must use the same arguments.
        pattern = re.compile(r"(^|[\s/`$(])" + re.escape(command) + r"($|[\s`;&|)])", re.M)
        if readme.is_file() and pattern.search(readme.read_text()):
            report.ok(
                f"{dockerfile.name} installs with `{command}`, the command {readme.name} gives"
            )
        else:
            report.fail(
                f"{readme.name} does not contain the Dockerfile's install command `{command}`: "
                "the image must install the package exactly as the README tells users to; "
                "change the Dockerfile and the README together"
            )

    packages = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {})
    wanted = list(packages.get("packages") or [])
    copied = " ".join(args for ins, args in instructions if ins in ("COPY", "ADD"))
    ignored = {
        line.strip().strip("/")
        for line in (dockerignore.read_text().splitlines() if dockerignore.is_file() else [])
        if line.strip() and not line.startswith("#")
    }
    for package in wanted:
        top = package.split(".")[0]
        in_copy = re.search(rf"(^|\s)(\./)?{re.escape(top)}/?(\s|$)", copied) is not None
        in_copy = in_copy or re.search(r"(^|\s)\.\s", copied) is not None
        exists = (dockerfile.parent / top).is_dir() or (pyproject.parent / top).is_dir()
        report.check(
            in_copy and top not in ignored and exists,
            f"the image gets package {top!r} (pyproject.toml lists it)",
            "not copied into the build, dropped by .dockerignore, or missing from the checkout",
        )
    for needed in ("pyproject.toml", "README.md"):
        report.check(
            needed in copied and needed not in ignored,
            f"the image build gets {needed}",
            "not copied, or dropped by .dockerignore",
        )

    users = [args for ins, args in instructions if ins == "USER"]
    last_user = users[-1].split(":")[0] if users else "root"
    report.check(
        last_user not in ("root", "0"),
        f"the image runs as a non-root user ({last_user})",
        "add a USER instruction",
    )
    report.check(
        any(ins == "HEALTHCHECK" for ins, _ in instructions), "the image has a HEALTHCHECK"
    )
    entrypoints = [args for ins, args in instructions if ins == "ENTRYPOINT"]
    report.check(
        bool(entrypoints) and entrypoints[-1].replace(" ", "") == '["trafficmirror"]',
        'the entrypoint is ["trafficmirror"]',
        f"found {entrypoints[-1] if entrypoints else 'none'}",
    )
    return report.exit_code()


# --- compose -------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _drain_timeout(args: list[str]) -> float:
    for i, arg in enumerate(args):
        if arg == "--drain-timeout" and i + 1 < len(args):
            return float(args[i + 1])
        if arg.startswith("--drain-timeout="):
            return float(arg.split("=", 1)[1])
    return DEFAULT_DRAIN_TIMEOUT


def compose(path: Path) -> int:
    report = Report()
    doc = yaml.safe_load(path.read_text())
    for name, service in (doc.get("services") or {}).items():
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        if not command or command[0] != "worker":
            continue
        drain = _drain_timeout(command)
        grace = _seconds(service.get("stop_grace_period", "10s"))
        report.check(
            grace is not None and grace > drain,
            f"compose service {name}: stop_grace_period ({grace}s) > --drain-timeout ({drain}s)",
            "Docker would SIGKILL the worker while it drains",
        )
    return report.exit_code()


# --- k8s -----------------------------------------------------------------------------


def _pod_templates(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return spec.get("template")
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    return None


def _labels(template: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = (template.get("metadata") or {}).get("labels") or {}
    return labels


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _keda_validator(kind: str) -> Any:
    """A strict JSON-schema validator for a KEDA kind, from the KEDA CRD models."""
    import jsonschema
    from cloudcoil.models.keda import v1alpha1

    schema = getattr(v1alpha1, kind).model_json_schema(by_alias=True, mode="validation")

    def close(node: Any) -> None:
        # The CRD models accept unknown fields; the API server would prune them
        # silently, which hides typos. Reject them, like kubernetes-validate --strict.
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return jsonschema.Draft202012Validator(schema)


def _keda_version() -> str:
    from importlib.metadata import version

    return version("cloudcoil.models.keda")


def _check_keda(report: Report, name: str, objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        kind = obj.get("kind")
        if kind not in KEDA_KINDS:
            continue
        label = f"{name}: {kind.lower()}/{obj['metadata']['name']}"
        validator = _keda_validator(kind)
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        report.check(
            not errors,
            f"{label} valid against KEDA's CRD schema "
            f"(cloudcoil.models.keda {_keda_version()}, unknown fields rejected)",
            "; ".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5]),
        )


def _container_ports(template: dict[str, Any]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for container in (template.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


# Kinds without a namespace; everything else in a build should share one.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def _check_namespaces(report: Report, name: str, objs: list[dict[str, Any]]) -> None:
    # An object that misses the overlay's namespace (e.g. one added by a
    # Component after the namespace transformer ran) lands in whatever
    # namespace kubectl's context points at, away from what it refers to.
    namespaces: dict[str, list[str]] = {}
    for obj in objs:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        namespace = obj["metadata"].get("namespace", "<none: kubectl's current namespace>")
        label = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
        namespaces.setdefault(namespace, []).append(label)
    main = max(namespaces, key=lambda ns: len(namespaces[ns]), default="")
    strays = [f"{', '.join(names)} in {ns}" for ns, names in namespaces.items() if ns != main]
    report.check(
        not strays,
        f"{name}: every namespaced object is in one namespace ({main or 'none'})",
        "but " + "; ".join(strays),
    )


def _check_objects(report: Report, name: str, objs: list[dict[str, Any]]) -> None:
    _check_namespaces(report, name, objs)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    configmaps = set(by_kind.get("ConfigMap", {}))
    secrets = set(by_kind.get("Secret", {}))
    workloads = [obj for obj in objs if _pod_templates(obj) is not None]

    for obj in workloads:
        kind, wname = obj["kind"], obj["metadata"]["name"]
        label = f"{name}: {kind.lower()}/{wname}"
        template = _pod_templates(obj) or {}
        pod_labels = _labels(template)
        pod = template.get("spec") or {}
        selector = (obj.get("spec") or {}).get("selector")
        if kind != "Job" and selector is not None:
            report.check(
                _matches(selector, pod_labels),
                f"{label} selector matches its pod template's labels",
                f"selector {selector} vs labels {pod_labels}",
            )
        ports = _container_ports(template)
        problems = []
        for container in pod.get("containers") or []:
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(probe_name) or {}
                for action in ("httpGet", "tcpSocket", "grpc"):
                    port = (probe.get(action) or {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        problems.append(f"{container['name']}.{probe_name} names port {port!r}")
            for source in container.get("envFrom") or []:
                ref = (source.get("configMapRef") or {}).get("name")
                if ref and ref not in configmaps and not source["configMapRef"].get("optional"):
                    problems.append(f"{container['name']} reads ConfigMap {ref!r} (not built)")
        for volume in pod.get("volumes") or []:
            secret = (volume.get("secret") or {}).get("secretName")
            if secret and secret not in secrets and secret not in EXTERNAL_SECRETS:
                problems.append(f"volume {volume['name']} needs Secret {secret!r} (not built)")
        report.check(
            not problems,
            f"{label} probes name existing ports; its ConfigMaps and Secrets resolve",
            "; ".join(problems),
        )

        workers = [
            c
            for c in pod.get("containers") or []
            if (c.get("args") or c.get("command") or [""])[0] == "worker"
        ]
        if workers:
            grace = float(pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
            drain = max(_drain_timeout(c.get("args") or []) for c in workers)
            report.check(
                grace > drain,
                f"{label} terminationGracePeriodSeconds ({grace:g}) > --drain-timeout ({drain:g})",
                "the kubelet would SIGKILL workers while they drain",
            )

    for service in by_kind.get("Service", {}).values():
        label = f"{name}: service/{service['metadata']['name']}"
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        backends = [
            t
            for t in (_pod_templates(w) for w in workloads)
            if t and _matches({"matchLabels": selector}, _labels(t))
        ]
        if not backends:
            report.fail(f"{label} selects no pods of this build")
            continue
        missing = [
            str(p.get("targetPort"))
            for p in service["spec"].get("ports") or []
            if isinstance(p.get("targetPort"), str)
            and not all(p["targetPort"] in _container_ports(t) for t in backends)
        ]
        report.check(
            not missing,
            f"{label} selects pods and its named targetPorts exist on them",
            f"no container port named {', '.join(missing)}",
        )

    for policy in by_kind.get("NetworkPolicy", {}).values():
        selector = (policy.get("spec") or {}).get("podSelector") or {}
        selected = [
            w["metadata"]["name"]
            for w in workloads
            if _matches(selector, _labels(_pod_templates(w) or {}))
        ]
        report.check(
            bool(selected),
            f"{name}: networkpolicy/{policy['metadata']['name']} selects pods of this build "
            f"({', '.join(selected) or 'none'})",
        )

    for scaled in by_kind.get("ScaledObject", {}).values():
        ref = (scaled.get("spec") or {}).get("scaleTargetRef") or {}
        target = by_kind.get(ref.get("kind", "Deployment"), {}).get(ref.get("name", ""))
        label = f"{name}: scaledobject/{scaled['metadata']['name']}"
        report.check(target is not None, f"{label} targets a workload of this build", str(ref))
        if target is not None:
            report.check(
                "replicas" not in (target.get("spec") or {}),
                f"{label}: its target leaves `replicas` to the autoscaler",
                "a `replicas` field would be reset by every kubectl apply",
            )


def k8s(builds: Iterable[str]) -> int:
    report = Report()
    for item in builds:
        name, _, path = item.partition("=")
        objs = [o for o in yaml.safe_load_all(Path(path).read_text()) if o]
        _check_keda(report, name, objs)
        _check_objects(report, name, objs)
    return report.exit_code()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "discover" and len(args) == 1:
        return discover(Path(args[0]))
    if command == "image" and len(args) == 4:
        return image(*(Path(a) for a in args))
    if command == "compose" and len(args) == 1:
        return compose(Path(args[0]))
    if command == "k8s" and args:
        return k8s(args)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
