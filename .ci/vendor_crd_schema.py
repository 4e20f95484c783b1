"""Copy one version's schema out of a published CRD file into .ci/crd-schemas/ (by hand, rarely).

    python .ci/vendor_crd_schema.py CRD.yaml KIND VERSION "SOURCE" > .ci/crd-schemas/FILE.json

Takes the CustomResourceDefinition of KIND from CRD.yaml (a multi-document
file is fine), keeps the openAPIV3Schema of VERSION as it is, minus the
`description` texts (most of the bytes; no check reads them), and writes it as
JSON with where it came from, so .ci/deploy_crds.py can validate manifests
offline. SOURCE says which release of which repository and which file (see
.ci/crd-schemas/README.md). Runs with the deploy tools' Python (PyYAML).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # A field *named* description is a schema (a dict), not a text: kept.
        return {
            k: _strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def main(path: str, kind: str, version: str, source: str) -> int:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    crds = [
        d
        for d in docs
        if d.get("kind") == "CustomResourceDefinition" and d["spec"]["names"]["kind"] == kind
    ]
    if len(crds) != 1:
        print(f"{path}: {len(crds)} CRDs of kind {kind}", file=sys.stderr)
        return 1
    crd = crds[0]
    found = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not found:
        print(f"{path}: {kind} has no version {version}", file=sys.stderr)
        return 1
    out = {
        "source": source,
        "crd": crd["metadata"]["name"],
        "apiVersion": f"{crd['spec']['group']}/{version}",
        "kind": kind,
        "schema": _strip(found[0]["schema"]["openAPIV3Schema"]),
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
