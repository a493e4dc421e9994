"""GitOps controllers that own a Cluster API object and would revert an in-cluster change (CAPC-G001).

Detected from the markers the controllers themselves put on what they apply: Flux kustomize-controller
and helm-controller labels, and Argo CD's tracking annotation (default since v3.0) or tracking label.
An object Flux was told to leave alone (`reconcile: disabled`, or an `ssa` policy of IfNotPresent or
Ignore) is not reported. Helm drift detection is off by default, but the next release upgrade still
rewrites the object, so helm-managed objects are always reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.model import KUBEADM_CONTROL_PLANE_KIND, ClusterInventory

__all__ = [
    "CHECKS",
    "GITOPS_MANAGED",
    "GitOpsOwner",
    "check_gitops",
    "check_gitops_owners",
    "gitops_owners",
]

GITOPS_MANAGED = Check(
    "CAPC-G001",
    Severity.WARNING,
    "Object is managed by GitOps",
    "upgrade through the manifests instead (GitOps mode: kubectl capc ... -f PATH), then commit them; "
    "an in-cluster change would be reverted",
)
CHECKS = (GITOPS_MANAGED,)

_KUSTOMIZE = "kustomize.toolkit.fluxcd.io"
_HELM = "helm.toolkit.fluxcd.io"
_ARGO_LABEL = "app.kubernetes.io/instance"
_ARGO_TRACKING = "argocd.argoproj.io/tracking-id"
_FLUX_HANDS_OFF = ("IfNotPresent", "Ignore")


@dataclass(frozen=True)
class GitOpsOwner:
    """The controller and the object that applies this one: a Kustomization, HelmRelease or Application.

    `namespace` is empty when the marker does not carry one (an Argo CD Application name)."""

    tool: str  # "Flux Kustomization", "Flux HelmRelease" or "Argo CD Application"
    namespace: str
    name: str
    marker: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.tool} {where}"


def gitops_owners(labels: Mapping[str, str], annotations: Mapping[str, str]) -> list[GitOpsOwner]:
    """Every GitOps owner the object's markers name, Flux first."""
    owners = []
    name = labels.get(f"{_KUSTOMIZE}/name")
    hands_off = (
        annotations.get(f"{_KUSTOMIZE}/reconcile") == "disabled"
        or annotations.get(f"{_KUSTOMIZE}/ssa") in _FLUX_HANDS_OFF
        or labels.get(f"{_KUSTOMIZE}/reconcile") == "disabled"
        or labels.get(f"{_KUSTOMIZE}/ssa") in _FLUX_HANDS_OFF
    )
    if name and not hands_off:
        namespace = labels.get(f"{_KUSTOMIZE}/namespace", "")
        owners.append(GitOpsOwner("Flux Kustomization", namespace, name, f"label {_KUSTOMIZE}/name"))
    name = labels.get(f"{_HELM}/name")
    if name:
        owners.append(
            GitOpsOwner("Flux HelmRelease", labels.get(f"{_HELM}/namespace", ""), name, f"label {_HELM}/name")
        )
    tracking = annotations.get(_ARGO_TRACKING, "")
    application = tracking.split(":", 1)[0] if ":" in tracking else ""
    if application:
        owners.append(GitOpsOwner("Argo CD Application", "", application, f"annotation {_ARGO_TRACKING}"))
    elif labels.get(_ARGO_LABEL):
        owners.append(GitOpsOwner("Argo CD Application", "", labels[_ARGO_LABEL], f"label {_ARGO_LABEL}"))
    return owners


def check_gitops(
    subject: ObjectRef, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> list[Finding]:
    return [
        GITOPS_MANAGED.finding(
            subject,
            f"{subject} is applied by {owner} ({owner.marker}): it would revert a change made in the cluster",
        )
        for owner in gitops_owners(labels, annotations)
    ]


def check_gitops_owners(inventory: ClusterInventory) -> list[Finding]:
    """CAPC-G001 for the Cluster, its KubeadmControlPlane and each MachineDeployment, from the labels
    and annotations read with them."""
    namespace = inventory.namespace
    cluster = inventory.cluster
    subject = ObjectRef("Cluster", namespace, cluster.name)
    findings = check_gitops(subject, cluster.labels, cluster.annotations)
    control_plane = inventory.control_plane
    if control_plane is not None:
        subject = ObjectRef(control_plane.kind or KUBEADM_CONTROL_PLANE_KIND, namespace, control_plane.name)
        findings += check_gitops(subject, control_plane.labels, control_plane.annotations)
    for deployment in inventory.machine_deployments:
        subject = ObjectRef("MachineDeployment", namespace, deployment.name)
        findings += check_gitops(subject, deployment.labels, deployment.annotations)
    return findings
