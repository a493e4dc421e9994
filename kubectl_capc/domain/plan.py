"""The upgrade plan: typed, ordered steps that take one cluster to a target version (`kind: UpgradePlan`).

A plan is data. `kubectl_capc.domain.planner` derives it from what was read (no I/O), the preview renders it,
`--dry-run` sends its writes with `dryRun=All`, and apply executes it. Because it is recomputed from the
live cluster on every run, a plan after an interruption lists only what is left to do.

Steps compare by what they change, not by the resourceVersion that guards them, so two plans made from
reads a few seconds apart are equal unless the cluster really changed in a way that matters.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.model import (
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    KUBEADM_CONTROL_PLANE_KIND,
    CapiVersion,
    FrozenDict,
    thaw,
)
from kubectl_capc.domain.versions import KubeVersion

__all__ = [
    "KIND",
    "MACHINE_DEPLOYMENT_KIND",
    "Blocker",
    "CreateMachineTemplate",
    "EnsureImage",
    "ImageSource",
    "OldMachines",
    "OnDeleteMode",
    "PatchObject",
    "PlanHop",
    "RollOnDelete",
    "Step",
    "UpgradePlan",
    "WaitRollout",
    "ZoneImage",
    "ZoneState",
]

KIND = "UpgradePlan"
MACHINE_DEPLOYMENT_KIND = "MachineDeployment"


class ImageSource(str, enum.Enum):
    """Where a missing CloudStack template comes from (`--image-source`)."""

    EXISTING = "existing"
    URL = "url"
    PREBUILT = "prebuilt"
    BUILD = "build"


class OnDeleteMode(str, enum.Enum):
    """What `image-upgrade` does with the old Machines of an OnDelete MachineDeployment (`--on-delete`)."""

    LEAVE = "leave"
    """Patch the deployment, wait for nothing, and name the Machines that still run the old version."""
    REPLACE = "replace"
    """Delete the old Machines one at a time, each once the previous replacement's Node is Ready."""


class ZoneState(str, enum.Enum):
    """Where a wanted CloudStack template stands in one failure domain's zone."""

    READY = "ready"
    IN_PROGRESS = "in-progress"
    MISSING = "missing"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    NOT_CHECKED = "not-checked"


@dataclass(frozen=True)
class ZoneImage:
    failure_domain: str
    zone: str
    state: ZoneState
    template_id: str = ""
    status: str = ""

    def __str__(self) -> str:
        detail = f" ({self.status})" if self.status and self.state is not ZoneState.READY else ""
        return f"{self.failure_domain}: {self.state.value}{detail}"


@dataclass(frozen=True)
class Blocker:
    """Something that must be fixed before the plan can be applied."""

    subject: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" + (f" ({self.hint})" if self.hint else "")


class Step:
    """One step of a plan. Subclasses are frozen dataclasses."""

    action: ClassVar[str]

    @property
    def writes(self) -> bool:
        """Whether executing the step changes an object in the management cluster."""
        return False

    @property
    def subject(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    def to_document(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class EnsureImage(Step):
    """The CloudStack template `image` must be ready in the zone of every failure domain."""

    action: ClassVar[str] = "EnsureImage"
    image: str
    version: KubeVersion
    zones: tuple[ZoneImage, ...]
    source: ImageSource

    @property
    def subject(self) -> str:
        return f"CloudStack template {self.image}"

    @property
    def ready(self) -> bool:
        return all(z.state in (ZoneState.READY, ZoneState.NOT_CHECKED) for z in self.zones)

    def zones_in(self, *states: ZoneState) -> tuple[ZoneImage, ...]:
        return tuple(z for z in self.zones if z.state in states)

    def summary(self) -> str:
        if self.ready:
            unchecked = self.zones_in(ZoneState.NOT_CHECKED)
            if unchecked:
                return f"assumed ready (not checked) in {_names(z.failure_domain for z in unchecked)}"
            return f"ready in {_names(z.failure_domain for z in self.zones)}"
        return ", ".join(str(z) for z in self.zones if z.state is not ZoneState.READY) + (
            f"; source: {self.source.value}"
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "image": self.image,
            "kubernetesVersion": str(self.version),
            "source": self.source.value,
            "zones": [
                {
                    "failureDomain": z.failure_domain,
                    "zone": z.zone,
                    "state": z.state.value,
                    **({"templateID": z.template_id} if z.template_id else {}),
                    **({"status": z.status} if z.status else {}),
                }
                for z in self.zones
            ],
        }


@dataclass(frozen=True)
class CreateMachineTemplate(Step):
    """A new CloudStackMachineTemplate cloned from `cloned_from` with only the image changed.

    `exists` means an object of that name and spec is already there (an earlier run made it): reused.
    `note` explains a name other than the preferred one. `source_manifest` is what the clone started from.
    """

    action: ClassVar[str] = "CreateMachineTemplate"
    name: str
    cloned_from: str
    image_from: str
    image: str
    version: KubeVersion
    manifest: FrozenDict = field(repr=False)
    exists: bool = False
    note: str = ""
    source_manifest: FrozenDict = field(default_factory=FrozenDict, repr=False, compare=False)

    @property
    def writes(self) -> bool:
        return not self.exists

    @property
    def subject(self) -> str:
        return f"{CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{self.name}"

    def summary(self) -> str:
        change = f"clone of {self.cloned_from}, image {self.image_from} → {self.image}"
        if self.exists:
            change = f"exists with the wanted spec, reused ({change})"
        return change + (f"; {self.note}" if self.note else "")

    def to_document(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "name": self.name,
            "clonedFrom": self.cloned_from,
            "kubernetesVersion": str(self.version),
            "image": {"from": self.image_from, "to": self.image},
            "exists": self.exists,
            **({"note": self.note} if self.note else {}),
            "manifest": thaw(self.manifest),
        }


@dataclass(frozen=True)
class PatchObject(Step):
    """One patch of a KubeadmControlPlane or MachineDeployment: version and machine template together.

    `resource_version` guards the patch (a concurrent change makes it fail with 409 instead of being
    overwritten); `annotations` are the object's current ones, from which the history record is built.
    """

    action: ClassVar[str] = "Patch"
    kind: str
    name: str
    version_from: str
    version_to: str
    template_from: str
    template_to: str
    image_from: str
    image_to: str
    resource_version: str = field(default="", compare=False)
    annotations: FrozenDict = field(default_factory=FrozenDict, repr=False, compare=False)
    on_delete: str = ""
    """For a MachineDeployment with the OnDelete strategy, the `OnDeleteMode` value applied to it."""

    @property
    def writes(self) -> bool:
        return True

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def is_control_plane(self) -> bool:
        return self.kind == KUBEADM_CONTROL_PLANE_KIND

    def summary(self) -> str:
        parts = []
        if self.version_from != self.version_to:
            parts.append(f"version {self.version_from} → {self.version_to}")
        parts.append(f"template {self.template_from} → {self.template_to}")
        return ", ".join(parts)

    def to_document(self) -> dict[str, Any]:
        document = {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "resourceVersion": self.resource_version,
            "version": {"from": self.version_from, "to": self.version_to},
            "machineTemplate": {"from": self.template_from, "to": self.template_to},
            "image": {"from": self.image_from, "to": self.image_to},
        }
        if self.on_delete:
            document["onDelete"] = self.on_delete
        return document


@dataclass(frozen=True)
class WaitRollout(Step):
    """Wait until every named object has rolled all its machines out at `version`."""

    action: ClassVar[str] = "WaitRollout"
    kind: str
    names: tuple[str, ...]
    version: str
    reason: str = ""

    @property
    def subject(self) -> str:
        return f"{self.kind}/{','.join(self.names)}"

    @property
    def is_control_plane(self) -> bool:
        return self.kind == KUBEADM_CONTROL_PLANE_KIND

    def summary(self) -> str:
        return f"rollout to {self.version}" + (f" ({self.reason})" if self.reason else "")

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "action": self.action,
            "kind": self.kind,
            "names": list(self.names),
            "version": self.version,
        }
        if self.reason:
            document["reason"] = self.reason
        return document


@dataclass(frozen=True)
class RollOnDelete(Step):
    """The Machines of an OnDelete MachineDeployment after its patch: CAPI replaces one only once it
    is deleted. `leave` waits for nothing; `replace` deletes the Machines not at `version` one at a time,
    keeping within maxUnavailable and never more than one below the ready count, and waits for each
    replacement's Node to be Ready. `machines` are the old ones when the plan was made: not at `version`,
    or built from another CloudStackMachineTemplate than `template` (the deployment's after its patch)."""

    action: ClassVar[str] = "RollOnDelete"
    name: str
    version: str
    mode: OnDeleteMode
    machines: tuple[str, ...] = field(default=(), compare=False)
    max_unavailable: int = field(default=0, compare=False)
    template: str = ""
    kind: ClassVar[str] = MACHINE_DEPLOYMENT_KIND

    @property
    def writes(self) -> bool:
        return self.mode is OnDeleteMode.REPLACE

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def is_control_plane(self) -> bool:
        return False

    def summary(self) -> str:
        count = f"{len(self.machines)} Machine{'' if len(self.machines) == 1 else 's'}"
        if self.mode is OnDeleteMode.LEAVE:
            return (
                f"strategy OnDelete: not waited for; {count} keep their version and image until deleted "
                "(--on-delete=replace rolls them)"
            )
        return (
            f"strategy OnDelete: delete {count} one at a time, each once the previous replacement's "
            f"Node is Ready (maxUnavailable {self.max_unavailable})"
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "machineTemplate": self.template,
            "mode": self.mode.value,
            "machines": list(self.machines),
            "maxUnavailable": self.max_unavailable,
        }


@dataclass(frozen=True)
class OldMachines:
    """Machines of an OnDelete MachineDeployment that run another version than the plan's target, or
    were built from another CloudStackMachineTemplate than the deployment's `template` (an image change)."""

    deployment: str
    version: str
    machines: tuple[tuple[str, str, str], ...]
    """(Machine name, the version it runs, the template it was built from: empty when not known)."""
    template: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.machines)

    def what(self) -> str:
        """What keeps them old, e.g. `at v1.28.5` or `on CloudStackMachineTemplate c1-md-0`."""
        versions = sorted({version for _, version, _ in self.machines if version != self.version})
        templates = sorted({t for _, version, t in self.machines if version == self.version and t})
        parts = [f"at {', '.join(versions)}"] if versions else []
        if templates:
            plural = "s" if len(templates) > 1 else ""
            parts.append(f"on CloudStackMachineTemplate{plural} {', '.join(templates)}")
        return " or ".join(parts)

    def to_document(self) -> dict[str, Any]:
        return {
            "machineDeployment": self.deployment,
            "version": self.version,
            "machineTemplate": self.template,
            "machines": [
                {"name": name, "version": version, **({"machineTemplate": template} if template else {})}
                for name, version, template in self.machines
            ],
        }


@dataclass(frozen=True)
class PlanHop:
    """The steps that bring the cluster to `version`, in order, and why this hop exists."""

    number: int
    version: KubeVersion
    reason: str
    steps: tuple[Step, ...]

    def to_document(self) -> dict[str, Any]:
        return {
            "hop": self.number,
            "version": str(self.version),
            "reason": self.reason,
            "steps": [step.to_document() for step in self.steps],
        }


@dataclass(frozen=True)
class UpgradePlan:
    """Everything `image-upgrade` would do to one cluster; empty `hops` means nothing is left to do."""

    namespace: str
    cluster: str
    capi_version: CapiVersion
    requested: str
    target: KubeVersion
    image_source: ImageSource
    pinned_image: str | None
    control_plane_version: str
    worker_versions: tuple[tuple[str, str], ...]
    hops: tuple[PlanHop, ...]
    blockers: tuple[Blocker, ...] = ()
    notes: tuple[str, ...] = ()
    strategies: tuple[tuple[str, str], ...] = ()
    """MachineDeployment name -> its rollout strategy, as shown."""
    old_machines: tuple[OldMachines, ...] = ()
    """OnDelete MachineDeployments left with Machines not at the target (`--on-delete=leave`)."""

    def steps(self) -> Iterator[tuple[PlanHop, Step]]:
        for hop in self.hops:
            for step in hop.steps:
                yield hop, step

    @property
    def writes(self) -> tuple[Step, ...]:
        return tuple(step for _, step in self.steps() if step.writes)

    @property
    def changes_pending(self) -> bool:
        """Some object would be created or changed (the `--dry-run` exit code 1)."""
        return bool(self.writes)

    @property
    def done(self) -> bool:
        """Nothing to write and nothing to wait for: the cluster is at the target."""
        return not self.hops

    def covered_by(self, approved: UpgradePlan) -> bool:
        """Every write of this plan was part of `approved` (so it needs no new confirmation)."""
        allowed = set(approved.writes)
        return all(step in allowed for step in self.writes) and self.target == approved.target

    def to_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.cluster, "namespace": self.namespace},
            "spec": {
                "requested": self.requested,
                "target": str(self.target),
                "imageSource": self.image_source.value,
                **({"image": self.pinned_image} if self.pinned_image else {}),
            },
            "status": {
                "capiVersion": self.capi_version,
                "current": {
                    "controlPlane": self.control_plane_version,
                    "machineDeployments": dict(self.worker_versions),
                    "strategies": dict(self.strategies),
                },
                "changesPending": self.changes_pending,
                "hops": [hop.to_document() for hop in self.hops],
                "blockers": [
                    {"subject": b.subject, "message": b.message, **({"hint": b.hint} if b.hint else {})}
                    for b in self.blockers
                ],
                "notes": list(self.notes),
                "oldMachines": [entry.to_document() for entry in self.old_machines],
            },
        }

    def table_rows(self) -> list[tuple[str, str, str, str]]:
        """HOP, ACTION, OBJECT, CHANGE rows for the plain table."""
        return [(str(hop.number), step.action, step.subject, step.summary()) for hop, step in self.steps()]


def _names(items: Sequence[str] | Iterator[str]) -> str:
    return ", ".join(items)
