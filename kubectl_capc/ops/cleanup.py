"""`kubectl capc cleanup CLUSTER`: delete the cluster's CloudStackMachineTemplates that nothing uses.

A template is the cluster's when it has an owner reference to the Cluster or its cluster-name label
(CAPI and `image-upgrade` set them), or when the history recorded on the cluster's objects names it and
it belongs to no other cluster. It is in use while any KubeadmControlPlane, MachineDeployment or
MachineSet of the namespace references it, or any Machine or CloudStackMachine says it was cloned from it
(`cluster.x-k8s.io/cloned-from-name`): a MachineSet of an earlier revision still creates machines from it.

Deleting is guarded twice: the references are read again right before deleting, and every delete
carries the template's uid and resourceVersion as preconditions, so a template that was re-created or
changed since it was listed is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.model import (
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    CLUSTER_NAME_LABEL,
    KUBEADM_CONTROL_PLANE_KIND,
    ClusterInventory,
    MachineTemplate,
)
from kubectl_capc.domain.plan import MACHINE_DEPLOYMENT_KIND
from kubectl_capc.domain.records import ACTION_UPGRADE, KUBERNETES_VERSION, read_history
from kubectl_capc.kube.write import Conflict, Gone, KubeWriter
from kubectl_capc.ops.cluster_io import ClusterAccess
from kubectl_capc.ops.lock import held_for_run
from kubectl_capc.ops.upgrade import require_confirmation

if TYPE_CHECKING:
    from kubectl_capc.kube.lease import ClusterLease

__all__ = [
    "CLONED_FROM_NAME",
    "KIND",
    "CleanupConsole",
    "CleanupIO",
    "CleanupOptions",
    "CleanupPlan",
    "KubeCleanupIO",
    "TemplateInUse",
    "UnusedTemplate",
    "plan_cleanup",
    "run_cleanup",
    "template_references",
]

KIND = "MachineTemplateCleanup"
CLONED_FROM_NAME = "cluster.x-k8s.io/cloned-from-name"
CLONED_FROM_GROUPKIND = "cluster.x-k8s.io/cloned-from-groupkind"

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
    annotations = _get(obj, "metadata", "annotations") or {}
    cloned_from = annotations.get(CLONED_FROM_NAME)
    group_kind = str(annotations.get(CLONED_FROM_GROUPKIND) or CLOUDSTACK_MACHINE_TEMPLATE_KIND)
    if cloned_from and group_kind.partition(".")[0] == CLOUDSTACK_MACHINE_TEMPLATE_KIND:
        names.add(str(cloned_from))
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


# -- execution --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupOptions:
    dry_run: bool = False
    yes: bool = False
    interactive: bool = False
    break_lock: bool = False


class CleanupConsole(Protocol):
    def show_plan(self, plan: CleanupPlan) -> None: ...

    def confirm(self, question: str) -> bool: ...

    def note(self, message: str) -> None: ...


class CleanupIO(Protocol):
    @property
    def writer(self) -> KubeWriter: ...

    def read(self) -> tuple[ClusterInventory, References]: ...

    def lease(self) -> ClusterLease: ...


class KubeCleanupIO(ClusterAccess):
    """Reads the cluster and everything in its namespace that uses templates (LISTs only)."""

    def read(self) -> tuple[ClusterInventory, References]:
        from kubectl_capc.kube.read import read_template_referrers

        inventory = self.read_inventory()
        referrers = read_template_referrers(self.api_client, namespace=self.namespace)
        return inventory, template_references(referrers)


def run_cleanup(io: CleanupIO, options: CleanupOptions, console: CleanupConsole) -> int:
    """List, check with dryRun=All, confirm, re-check the references, delete, under the cluster's
    upgrade lock (a dry run only reads it); returns the exit code (1: a dry run with templates to delete)."""
    plan = plan_cleanup(*io.read())  # a cluster that cannot be read is refused before the lock is written
    lock = held_for_run(io.lease(), dry_run=options.dry_run, break_lock=options.break_lock, note=console.note)
    with lock:
        return _run_cleanup(io, options, console, plan)


def _run_cleanup(io: CleanupIO, options: CleanupOptions, console: CleanupConsole, plan: CleanupPlan) -> int:
    console.show_plan(plan)
    if not plan.unused:
        console.note(f"cluster {plan.namespace}/{plan.cluster}: no unused CloudStackMachineTemplates")
        return 0
    for template in plan.unused:
        _delete(io.writer, template, dry_run=True)
    if options.dry_run:
        console.note(f"{len(plan.unused)} unused CloudStackMachineTemplates would be deleted (dryRun=All)")
        return 1
    require_confirmation(
        f"Delete {len(plan.unused)} CloudStackMachineTemplates?",
        yes=options.yes,
        interactive=options.interactive,
        ask=console.confirm,
        verb="delete",
        done="deleted",
    )
    fresh = plan_cleanup(*io.read())
    still_unused = {t.name: t for t in fresh.unused}
    used = {t.name: t.used_by for t in fresh.in_use}
    for template in plan.unused:
        if template.name not in still_unused:
            reason = f"now used by {', '.join(used[template.name])}" if template.name in used else "gone"
            console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} kept: {reason}")
            continue
        try:
            _delete(io.writer, template, dry_run=False)
        except Gone:
            console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} was already deleted")
            continue
        except Conflict as err:
            console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} kept: changed since listed")
            console.note(f"  {err.message}")
            continue
        console.note(f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template.name} deleted")
    return 0


def _delete(writer: KubeWriter, template: UnusedTemplate, *, dry_run: bool) -> None:
    writer.delete_template(
        template.name, uid=template.uid, resource_version=template.resource_version, dry_run=dry_run
    )
