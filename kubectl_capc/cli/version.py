"""`kubectl capc version`: the versions of the plugin, Python and the client libraries."""

from __future__ import annotations

import sys

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
    # Package metadata, not an import: importing kubernetes or cs would cost half a second.
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
