"""`kubectl capc version`: the versions of the plugin, Python and the client libraries."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from kubectl_capc.cli.options import OutputFormat, OutputOption
from kubectl_capc.cli.printing import print_document, print_table

__all__ = ["version"]


def version(output: OutputOption = OutputFormat.TABLE) -> None:
    """Print the versions of the plugin, Python, and the Kubernetes and CloudStack client libraries."""
    report = {
        "kubectl-capc": _installed_version("kubectl-capc"),
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "kubernetes": _installed_version("kubernetes"),
        "cs": _installed_version("cs"),
    }
    if output is OutputFormat.TABLE:
        print_table(("COMPONENT", "VERSION"), list(report.items()))
    else:
        print_document(report, output)


def _installed_version(distribution: str) -> str:
    """The version in `distribution`'s metadata, found as `importlib.metadata` finds it (the first
    `NAME-VERSION.dist-info` or `NAME.egg-info` on `sys.path`), without importing kubernetes or cs
    (half a second) nor `importlib.metadata` itself (its e-mail header parser costs a fifth of this
    command's start-up)."""
    wanted = _normalized(distribution)
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if dot and suffix in ("dist-info", "egg-info") and _normalized(stem.split("-")[0]) == wanted:
                found = _metadata_version(Path(entry or ".", name), suffix)
                if found is not None:
                    return found
    return "not installed"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata_version(directory: Path, suffix: str) -> str | None:
    try:
        with (directory / ("METADATA" if suffix == "dist-info" else "PKG-INFO")).open(
            encoding="utf-8"
        ) as text:
            for line in text:
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip()
                if not line.strip():
                    return None  # the headers ended without a version
    except OSError:
        return None
    return None
