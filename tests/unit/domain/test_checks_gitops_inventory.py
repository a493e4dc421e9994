"""CAPC-G001 over a read cluster: the markers on the Cluster, its KubeadmControlPlane and each
MachineDeployment, as the reader keeps them, reach the check and `run_checks`. No servers."""

from __future__ import annotations

from kubectl_capc.domain.checks import run_checks
from kubectl_capc.domain.checks.facts import Facts
from kubectl_capc.domain.checks.gitops_owners import check_gitops_owners
from tests.support.checks_support import find, inventory_of, render


def test_owners_of_the_control_plane_deployments_and_cluster_are_each_named() -> None:
    objects = render()
    find(objects, "KubeadmControlPlane")["metadata"].setdefault("labels", {}).update(
        {"kustomize.toolkit.fluxcd.io/name": "capi-clusters", "kustomize.toolkit.fluxcd.io/namespace": "flux"}
    )
    find(objects, "MachineDeployment")["metadata"].setdefault("annotations", {}).update(
        {"argocd.argoproj.io/tracking-id": "prod-c1:cluster.x-k8s.io/MachineDeployment:ns/c1-md-0"}
    )
    find(objects, "Cluster")["metadata"].setdefault("labels", {}).update(
        {"helm.toolkit.fluxcd.io/name": "c1", "helm.toolkit.fluxcd.io/namespace": "flux"}
    )
    findings = check_gitops_owners(inventory_of(objects))
    assert [(f.check_id, str(f.subject)) for f in findings] == [
        ("CAPC-G001", "Cluster/c1"),
        ("CAPC-G001", "KubeadmControlPlane/c1-control-plane"),
        ("CAPC-G001", "MachineDeployment/c1-md-0"),
    ]
    assert "Flux HelmRelease flux/c1" in findings[0].message
    assert "Flux Kustomization flux/capi-clusters" in findings[1].message
    assert "Argo CD Application prod-c1" in findings[2].message
    assert "-f" in findings[1].hint
    assert {f.check_id for f in run_checks(inventory_of(objects), Facts())} >= {"CAPC-G001"}


def test_a_cluster_without_markers_has_no_gitops_finding() -> None:
    inventory = inventory_of(render())
    assert check_gitops_owners(inventory) == []
    assert "CAPC-G001" not in {f.check_id for f in run_checks(inventory, Facts())}
