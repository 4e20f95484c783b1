"""Checks of the deployment files that no schema expresses; run by .ci/validate-deploy.

Runs with the validation tools' own Python (PyYAML, jsonschema, cel-python and
the KEDA models come from there), offline. Each subcommand prints one line per check,
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
  KEDA's CRD schema, Istio and Gateway API objects against their vendored CRD
  schemas and CEL rules, and the cross-references that only fail on a cluster
  (selectors, named ports, generated ConfigMap names, grace periods, mirror
  targets).

Each subcommand lives in its own module beside this one (deploy_kustomize,
deploy_image, deploy_compose, deploy_k8s with deploy_crds; deploy_common has
the report).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploy_compose import compose
from deploy_image import image
from deploy_k8s import k8s
from deploy_kustomize import discover


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
