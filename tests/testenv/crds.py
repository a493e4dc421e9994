"""Load the upstream CAPI and CAPC CRDs for a test-bed profile, serving only truthful versions.

Released manifests convert between versions with webhooks. The test bed runs none, and a CRD with
conversion strategy None would relabel a stored object's apiVersion without changing its shape. So each
CRD here serves exactly its storage version: CAPC v1beta3, CAPI v1beta1 (v1.10 profile) or v1beta2
(newest profile). Everything else comes from the upstream files unchanged, plus the contract label the
CAPC release kustomization adds, so contract-based version discovery behaves as in a real install.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.testenv import upstream

CAPC_CONTRACT_LABEL = ("cluster.x-k8s.io/v1beta1", "v1beta1_v1beta2_v1beta3")
PROFILES = ("v1beta1", "v1beta2")
# The CAPI kinds a CAPC cluster made of a KubeadmControlPlane and MachineDeployments consists of.
CAPI_CRD_FILES = frozenset(
    {
        "cluster.x-k8s.io_clusters.yaml",
        "cluster.x-k8s.io_clusterclasses.yaml",
        "cluster.x-k8s.io_machinedeployments.yaml",
        "cluster.x-k8s.io_machinesets.yaml",
        "cluster.x-k8s.io_machines.yaml",
        "cluster.x-k8s.io_machinehealthchecks.yaml",
        "controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml",
        "controlplane.cluster.x-k8s.io_kubeadmcontrolplanetemplates.yaml",
        "bootstrap.cluster.x-k8s.io_kubeadmconfigs.yaml",
        "bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.yaml",
    }
)


def capi_crd(capi: str, file_name: str) -> dict[str, Any]:
    """One upstream CAPI CRD of the profile, as released (all versions, before serving is narrowed)."""
    path = next((p for p in upstream.capi_crd_files(capi) if p.name == file_name), None)
    if path is None:
        raise upstream.UpstreamError(f"the pinned CAPI release of profile {capi} has no {file_name}")
    return dict(yaml.safe_load(path.read_text()))


def _documents(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
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
    if capi not in PROFILES:
        raise ValueError(f"unknown CAPI profile {capi!r}; use one of {', '.join(PROFILES)}")
    capi_files = [p for p in upstream.capi_crd_files(capi) if p.name in CAPI_CRD_FILES]
    missing = CAPI_CRD_FILES - {p.name for p in capi_files}
    if missing:
        raise upstream.UpstreamError(f"the pinned CAPI release has no {', '.join(sorted(missing))}")
    crds = [_serve_storage_only(crd) for crd in _documents(capi_files)]
    for crd in _documents(upstream.capc_crd_files(capi)):
        if crd["spec"]["group"] != "infrastructure.cluster.x-k8s.io":
            continue  # CAPC's test-only "fakes" group is not part of a real install
        crd.setdefault("metadata", {}).setdefault("labels", {})[CAPC_CONTRACT_LABEL[0]] = CAPC_CONTRACT_LABEL[
            1
        ]
        crds.append(_serve_storage_only(crd))
    return crds


def served_version(crd: dict[str, Any]) -> str:
    return next(v["name"] for v in crd["spec"]["versions"] if v["served"])
