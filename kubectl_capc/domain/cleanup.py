"""Which of a cluster's CloudStackMachineTemplates `kubectl capc cleanup` may delete (pure).

A template is the cluster's when it has an owner reference to the Cluster or its cluster-name label
(CAPI and `image-upgrade` set them), or when the history recorded on the cluster's objects names it and
it belongs to no other cluster. It is in use while any KubeadmControlPlane, MachineDeployment or
MachineSet of the namespace references it, or any Machine or CloudStackMachine says it was cloned from it
(`cluster.x-k8s.io/cloned-from-name`): a MachineSet of an earlier revision still creates machines from it.
`kubectl_capc.ops.cleanup` executes the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.inventory import cloned_from
from kubectl_capc.domain.model import (
    CLONED_FROM_NAME,
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    CLUSTER_NAME_LABEL,
    KUBEADM_CONTROL_PLANE_KIND,
    ClusterInventory,
    MachineTemplate,
)
from kubectl_capc.domain.plan import MACHINE_DEPLOYMENT_KIND
from kubectl_capc.domain.records import ACTION_UPGRADE, KUBERNETES_VERSION, read_history

__all__ = [
    "CLONED_FROM_NAME",
    "KIND",
    "CleanupPlan",
    "References",
    "TemplateInUse",
    "UnusedTemplate",
    "plan_cleanup",
    "template_references",
]

KIND = "MachineTemplateCleanup"

References = Mapping[str, tuple[str, ...]]
"""CloudStackMachineTemplate name -> the objects that use it (`MachineSet/c1-md-0-abcde`)."""


# -- what uses a template ---------------------------------------------------------------------------


def template_references(referrers: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, tuple[str, ...]]:
    """Which objects use which CloudStackMachineTemplate; `referrers` maps kinds to raw objects.

    Reads every place a template can be named, whatever the kind and CAPI version: the control plane's
    `spec.machineTemplate[.spec].infrastructureRef`, `spec.template.spec.infrastructureRef` of
    MachineDeployments and MachineSets, and the cloned-from annotation of Machines and infra machines.
    A reference without a kind counts: when unsure, a template is kept.
    """
    users: dict[str, list[str]] = {}
    for kind, objects in referrers.items():
        for obj in objects:
            subject = f"{kind}/{_get(obj, 'metadata', 'name')}"
            for name in _named_templates(obj):
                users.setdefault(name, []).append(subject)
    return {name: tuple(sorted(set(subjects))) for name, subjects in users.items()}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _named_templates(obj: Mapping[str, Any]) -> set[str]:
    refs = (
        _get(obj, "spec", "machineTemplate", "infrastructureRef"),
        _get(obj, "spec", "machineTemplate", "spec", "infrastructureRef"),
        _get(obj, "spec", "template", "spec", "infrastructureRef"),
    )
    names = {
        str(ref["name"])
        for ref in refs
        if isinstance(ref, Mapping)
        and ref.get("name")
        and ref.get("kind", CLOUDSTACK_MACHINE_TEMPLATE_KIND) == CLOUDSTACK_MACHINE_TEMPLATE_KIND
    }
    if template := cloned_from(obj):
        names.add(template)
    return names


# -- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnusedTemplate:
    """A template of the cluster that nothing uses: cleanup deletes it.

    `rollback_target_of` lists objects whose last upgrade came from it: once it is gone they cannot be
    rolled back.
    """

    name: str
    uid: str
    resource_version: str
    image: str
    kubernetes_version: str
    belongs: str
    rollback_target_of: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        if not self.rollback_target_of:
            return ""
        return "previous template of " + ", ".join(self.rollback_target_of) + ": no rollback after deleting"

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
            "image": self.image,
            "belongs": self.belongs,
        }
        if self.kubernetes_version:
            document["kubernetesVersion"] = self.kubernetes_version
        if self.rollback_target_of:
            document["rollbackTargetOf"] = list(self.rollback_target_of)
        return document


@dataclass(frozen=True)
class TemplateInUse:
    """A template of the cluster that is kept, and what uses it."""

    name: str
    used_by: tuple[str, ...]


@dataclass(frozen=True)
class CleanupPlan:
    """What `cleanup` deletes and keeps in one cluster (`kind: MachineTemplateCleanup`)."""

    namespace: str
    cluster: str
    unused: tuple[UnusedTemplate, ...]
    in_use: tuple[TemplateInUse, ...]

    def to_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.cluster, "namespace": self.namespace},
            "status": {
                "delete": [template.to_document() for template in self.unused],
                "inUse": [{"name": t.name, "usedBy": list(t.used_by)} for t in self.in_use],
            },
        }

    def table_rows(self) -> list[tuple[str, str, str, str]]:
        """NAME, IMAGE, VERSION, NOTE rows of the templates to delete."""
        return [(t.name, t.image or "-", t.kubernetes_version or "-", t.note) for t in self.unused]


def plan_cleanup(inventory: ClusterInventory, references: References) -> CleanupPlan:
    """The cluster's templates that `references` shows unused, and those kept. Pure."""
    if inventory.cluster.topology_managed:
        raise PlanError(
            f"cluster {inventory.namespace}/{inventory.name} is topology-managed",
            hint="Cluster API deletes the machine templates of a ClusterClass cluster itself",
        )
    recorded = _recorded_templates(inventory)
    targets = _rollback_targets(inventory)
    unused, in_use = [], []
    for template in inventory.namespace_templates:
        belongs = _belongs(template, inventory, recorded)
        if belongs is None or _deleting(template):
            continue
        used_by = references.get(template.name, ())
        if used_by:
            in_use.append(TemplateInUse(template.name, used_by))
            continue
        unused.append(
            UnusedTemplate(
                name=template.name,
                uid=template.uid,
                resource_version=template.resource_version,
                image=str(template.cloudstack_template),
                kubernetes_version=str(template.annotations.get(KUBERNETES_VERSION, "")),
                belongs=belongs,
                rollback_target_of=tuple(sorted(targets.get(template.name, ()))),
            )
        )
    return CleanupPlan(inventory.namespace, inventory.name, tuple(unused), tuple(in_use))


def _owners(inventory: ClusterInventory) -> Sequence[tuple[str, Mapping[str, str]]]:
    cp = inventory.control_plane
    owners: list[tuple[str, Mapping[str, str]]] = []
    if cp is not None:
        owners.append((f"{KUBEADM_CONTROL_PLANE_KIND}/{cp.name}", cp.annotations))
    owners += [
        (f"{MACHINE_DEPLOYMENT_KIND}/{md.name}", md.annotations) for md in inventory.machine_deployments
    ]
    return owners


def _recorded_templates(inventory: ClusterInventory) -> dict[str, str]:
    """Template name -> the object whose recorded history names it."""
    found: dict[str, str] = {}
    for subject, recorded_on in _owners(inventory):
        for rotation in read_history(recorded_on):
            for name in (rotation.from_template, rotation.to_template):
                found.setdefault(name, subject)
    return found


def _rollback_targets(inventory: ClusterInventory) -> dict[str, list[str]]:
    """Template name -> objects whose newest record is an upgrade from it (what a rollback needs)."""
    targets: dict[str, list[str]] = {}
    for subject, recorded_on in _owners(inventory):
        history = read_history(recorded_on)
        if history and history[0].action == ACTION_UPGRADE:
            targets.setdefault(history[0].from_template, []).append(subject)
    return targets


def _belongs(
    template: MachineTemplate, inventory: ClusterInventory, recorded: Mapping[str, str]
) -> str | None:
    """Why `template` is this cluster's, or None when it is not (or is another cluster's)."""
    cluster = inventory.cluster
    owners = [
        ref
        for ref in _get(template.manifest, "metadata", "ownerReferences") or ()
        if isinstance(ref, Mapping) and ref.get("kind") == "Cluster"
    ]
    for ref in owners:
        same_uid = not ref.get("uid") or not cluster.uid or ref.get("uid") == cluster.uid
        if ref.get("name") == cluster.name and same_uid:
            return f"owned by Cluster/{cluster.name}"
    label = template.labels.get(CLUSTER_NAME_LABEL)
    if label == cluster.name:
        return f"labelled {CLUSTER_NAME_LABEL}={cluster.name}"
    if template.name in recorded and label is None and not owners:
        return f"named in the history of {recorded[template.name]}"
    return None


def _deleting(template: MachineTemplate) -> bool:
    return bool(_get(template.manifest, "metadata", "deletionTimestamp"))
