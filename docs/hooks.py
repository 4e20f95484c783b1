"""MkDocs hook: publish compose/README.md and k8s/README.md as pages of the site.

Those two guides stay next to the files they describe (the manifests and the
compose file point readers at them, and they read well on a repository
browser), so the site takes them from there instead of keeping a copy in docs/
that would drift. They hold no relative links, so they render as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
# Page in the site -> the file it is made from.
PAGES = {
    "deployment/compose.md": ROOT / "compose" / "README.md",
    "deployment/kubernetes.md": ROOT / "k8s" / "README.md",
}


def on_files(files: Files, config: Any) -> Files:
    for uri, source in PAGES.items():
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
