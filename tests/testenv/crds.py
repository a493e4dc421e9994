"""Load the upstream CAPI and CAPC CRDs for a test-bed profile, serving only truthful versions.

Released manifests convert between versions with webhooks. The test bed runs none, and a CRD with
conversion strategy None would relabel a stored object's apiVersion without changing its shape. So each
CRD here serves exactly its storage version: CAPC v1beta3, CAPI v1beta1 (v1.10 profile) or v1beta2
(newest profile). Everything else comes from the upstream files unchanged, plus the contract label the
CAPC release kustomization adds, so contract-based version discovery behaves as in a real install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SHARED = Path(__file__).resolve().parents[3] / "shared" / "upstream"
CAPI_DIRS = {"v1beta1": SHARED / "capi" / "crds-v1.10.10", "v1beta2": SHARED / "capi" / "crds"}
CAPC_DIR = SHARED / "capc" / "crds"
CAPC_CONTRACT_LABEL = ("cluster.x-k8s.io/v1beta1", "v1beta1_v1beta2_v1beta3")
PROFILES = tuple(CAPI_DIRS)


def _documents(directory: Path) -> Iterator[dict[str, Any]]:
    if not directory.is_dir():
        raise FileNotFoundError(
            f"upstream CRDs not found at {directory}; the shared/ folder must sit beside the repo"
        )
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                yield doc


def _serve_storage_only(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    for version in versions:
        version["served"] = bool(version.get("storage"))
    crd["spec"]["conversion"] = {"strategy": "None"}
    return crd


def profile_crds(capi: str) -> list[dict[str, Any]]:
    """All CRDs for the profile `capi` ("v1beta1" or "v1beta2"), ready to create."""
    if capi not in CAPI_DIRS:
        raise ValueError(f"unknown CAPI profile {capi!r}; use one of {', '.join(PROFILES)}")
    crds = [_serve_storage_only(crd) for crd in _documents(CAPI_DIRS[capi])]
    for crd in _documents(CAPC_DIR):
        if crd["spec"]["group"] != "infrastructure.cluster.x-k8s.io":
            continue  # CAPC's test-only "fakes" group is not part of a real install
        crd.setdefault("metadata", {}).setdefault("labels", {})[CAPC_CONTRACT_LABEL[0]] = CAPC_CONTRACT_LABEL[
            1
        ]
        crds.append(_serve_storage_only(crd))
    return crds


def served_version(crd: dict[str, Any]) -> str:
    return next(v["name"] for v in crd["spec"]["versions"] if v["served"])
