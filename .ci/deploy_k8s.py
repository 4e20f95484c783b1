"""Checks of kustomize build outputs that no Kubernetes schema expresses (`k8s`).

kubernetes-validate checks each object against the API's schemas; this checks
KEDA's objects against KEDA's CRD schema (unknown fields rejected), Istio's and
Gateway API's against their vendored CRD schemas (deploy_crds), and the
cross-references that only fail on a cluster: selectors that match their pod
templates, probes and Service targetPorts naming existing ports, ConfigMaps and
Secrets that resolve, one namespace per build, grace periods longer than the
workers' drain and the recorder's preStop + drain + flush, NetworkPolicies and
ScaledObjects that select something.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from deploy_common import (
    RECORD_DRAIN_TIMEOUT,
    RECORD_FLUSH_TIMEOUT,
    Report,
    drain_timeout,
    seconds_option,
)
from deploy_crds import check_crd_objects, check_mirror_targets

# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30.0
# Secrets the manifests expect to be created out of band (k8s/README.md says how).
EXTERNAL_SECRETS = {"trafficmirror-kafka"}
# Kinds checked here against their CRD schema rather than by kubernetes-validate.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def _pod_templates(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return spec.get("template")
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    return None


def _prestop_sleep(container: dict[str, Any]) -> float:
    """Seconds of a `preStop: exec: [sleep, N]` hook (0 without one)."""
    command = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}
    argv = command.get("command") or []
    if len(argv) == 2 and argv[0] in ("sleep", "/bin/sleep"):
        try:
            return float(argv[1])
        except ValueError:
            return 0.0
    return 0.0


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
            drain = max(drain_timeout(c.get("args") or []) for c in workers)
            report.check(
                grace > drain,
                f"{label} terminationGracePeriodSeconds ({grace:g}) > --drain-timeout ({drain:g})",
                "the kubelet would SIGKILL workers while they drain",
            )
        recorders = [
            c
            for c in pod.get("containers") or []
            if (c.get("args") or c.get("command") or [""])[0] == "record"
        ]
        for recorder in recorders:
            grace = float(pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
            args = recorder.get("args") or []
            stop = _prestop_sleep(recorder)
            drain = drain_timeout(args, RECORD_DRAIN_TIMEOUT)
            flush = seconds_option(args, "--flush-timeout", RECORD_FLUSH_TIMEOUT)
            report.check(
                grace > stop + drain + flush,
                f"{label} terminationGracePeriodSeconds ({grace:g}) > {recorder['name']}'s "
                f"preStop ({stop:g}) + --drain-timeout ({drain:g}) + --flush-timeout ({flush:g})",
                "the kubelet would SIGKILL the recorder before it has drained and flushed",
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
        check_crd_objects(report, name, objs)
        check_mirror_targets(report, name, objs)
        _check_objects(report, name, objs)
    return report.exit_code()
