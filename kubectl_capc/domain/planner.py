"""Turn a cluster inventory and a target version into an `UpgradePlan`. Pure: no I/O, no clock.

Inputs are what was read: the inventory (`domain.inventory`), the CloudStack templates each failure
domain's zone lists (None when CloudStack was not asked, e.g. in GitOps mode), and the request (target, pinned
image, image source, MachineDeployment parallelism). The hops come from `domain.versions`; the
CloudStack template for each hop follows the naming convention of the one in use (`domain.naming`);
each new CloudStackMachineTemplate is a copy of the current one with only the image changed.

The plan is always made from the live state, so the same request after an interruption plans only what
is left: objects already at a hop's version and image are not patched again, a template an earlier run
created is found by its deterministic name and reused, and a rollout still in progress is waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kubectl_capc.domain.errors import PlanError, UsageError
from kubectl_capc.domain.images import CopyState, classify_copy
from kubectl_capc.domain.model import (
    CLUSTER_NAME_LABEL,
    KUBEADM_CONTROL_PLANE_KIND,
    CloudStackTemplateRow,
    ClusterInventory,
    ControlPlane,
    FailureDomain,
    FrozenDict,
    MachineDeployment,
    MachineTemplate,
    ZoneTemplates,
    freeze,
    thaw,
)
from kubectl_capc.domain.naming import (
    machine_template_name,
    next_free_name,
    parse_template_name,
    template_name_for,
)
from kubectl_capc.domain.plan import (
    MACHINE_DEPLOYMENT_KIND,
    Blocker,
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    OldMachines,
    OnDeleteMode,
    PatchObject,
    PlanHop,
    RollOnDelete,
    Step,
    UpgradePlan,
    WaitRollout,
    ZoneImage,
    ZoneState,
)
from kubectl_capc.domain.records import CLONED_FROM, KUBERNETES_VERSION, PREFIX
from kubectl_capc.domain.versions import (
    Hop,
    KubeVersion,
    TargetVersion,
    WorkerMove,
    parse_version,
    plan_hops,
    resolve_target,
    version_or_none,
)

__all__ = ["PlanRequest", "clone_machine_template", "comparable_spec", "plan_upgrade"]

# Annotations a clone must not inherit: conversion data describes the source object's own round trips,
# and last-applied-configuration would make `kubectl apply` believe the clone came from the source's file.
_DROPPED_ANNOTATIONS = (
    "cluster.x-k8s.io/conversion-data",
    "kubectl.kubernetes.io/last-applied-configuration",
)
_KEPT_METADATA = ("namespace", "labels", "annotations", "ownerReferences")


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for.

    `obtainable` are versions the image source can provide although CloudStack has no template for them
    yet (with `--image-source url|prebuilt|build` and an exact `--to`, the target itself).
    """

    target: TargetVersion
    requested: str
    image: str | None = None
    image_source: ImageSource = ImageSource.EXISTING
    parallel: int = 1
    obtainable: frozenset[KubeVersion] = field(default_factory=frozenset)
    on_delete: OnDeleteMode = OnDeleteMode.LEAVE


@dataclass(frozen=True)
class _Owner:
    """A KubeadmControlPlane or MachineDeployment as the plan sees it before, between and after hops."""

    kind: str
    name: str
    version: KubeVersion
    template: str
    template_manifest: FrozenDict
    image: str
    resource_version: str
    annotations: FrozenDict
    rolling: bool
    on_delete: bool = False
    max_unavailable: int = 0

    @property
    def is_control_plane(self) -> bool:
        return self.kind == KUBEADM_CONTROL_PLANE_KIND


def plan_upgrade(
    inventory: ClusterInventory, request: PlanRequest, zone_templates: ZoneTemplates | None
) -> UpgradePlan:
    """The plan that takes `inventory`'s cluster to `request.target`.

    Raises PlanError when no plan can exist (topology-managed cluster, unreadable objects, downgrade,
    no template to derive names from); problems an operator can fix and retry are plan blockers.
    """
    if request.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    control_plane, workers = _owners(inventory, zone_templates, request.on_delete)
    available = (
        _available_versions((control_plane, *workers), inventory.failure_domains, zone_templates)
        | request.obtainable
    )
    goal = _goal(request, available | {control_plane.version, *(md.version for md in workers)})
    # A minor-only target keeps its wording in the hop reasons ("newest available patch").
    target = request.target if request.image is None else TargetVersion(goal.major, goal.minor, goal.patch)
    version_hops = _version_hops(control_plane, workers, target, available | {goal})
    builder = _Builder(inventory, request, zone_templates, goal)
    hops = builder.build(control_plane, workers, version_hops)
    notes = []
    if zone_templates is None:
        notes.append(
            "CloudStack was not asked: the templates are assumed to exist and be ready in every zone"
        )
    old = _old_machines(inventory, goal, hops) if request.on_delete is OnDeleteMode.LEAVE else ()
    skew = _kubelet_skew_blockers(inventory, hops) if request.on_delete is OnDeleteMode.LEAVE else []
    notes += [_old_machines_note(entry, inventory) for entry in old]
    return UpgradePlan(
        namespace=inventory.namespace,
        cluster=inventory.name,
        capi_version=inventory.capi_version,
        requested=request.requested,
        target=goal,
        image_source=request.image_source,
        pinned_image=request.image,
        control_plane_version=str(control_plane.version),
        worker_versions=tuple((md.name, str(md.version)) for md in workers),
        hops=hops,
        blockers=(*_pause_blockers(inventory), *builder.blockers, *skew),
        notes=tuple(notes),
        strategies=tuple((md.name, str(md.strategy)) for md in inventory.machine_deployments),
        old_machines=old,
    )


def _old_machines(
    inventory: ClusterInventory, goal: KubeVersion, hops: Sequence[PlanHop]
) -> tuple[OldMachines, ...]:
    """Per OnDelete MachineDeployment, its Machines (not being deleted) that do not run `goal` or were
    built from another CloudStackMachineTemplate than the one the plan leaves it on."""
    templates = {md.name: md.infrastructure_ref.name for md in inventory.machine_deployments}
    for hop in hops:
        templates.update(
            (s.name, s.template_to)
            for s in hop.steps
            if isinstance(s, PatchObject) and not s.is_control_plane
        )
    result = []
    for md in inventory.machine_deployments:
        if not md.strategy.on_delete:
            continue
        behind = tuple(
            (m.name, m.version, m.machine_template)
            for m in inventory.machines_behind(md, (str(goal), templates[md.name]))
        )
        if behind:
            result.append(OldMachines(md.name, str(goal), behind, templates[md.name]))
    return tuple(result)


KUBELET_SKEW_MINORS = 3
"""How many minors a kubelet may be older than the kube-apiserver (the Kubernetes skew policy)."""


def _kubelet_skew_blockers(inventory: ClusterInventory, hops: Sequence[PlanHop]) -> list[Blocker]:
    """With --on-delete=leave, old Machines of OnDelete deployments keep their kubelets: the control plane
    must not move more than three minors ahead of them."""
    moves = [
        hop.version
        for hop in hops
        if any(isinstance(s, PatchObject) and s.is_control_plane for s in hop.steps)
    ]
    if not moves:
        return []
    highest = max(moves)
    blockers = []
    for md in inventory.machine_deployments:
        if not md.strategy.on_delete:
            continue
        behind = [
            (m.name, v)
            for m in inventory.machines_of(md)
            if not m.deleting
            and (v := version_or_none(m.version)) is not None
            and highest.minor - v.minor > KUBELET_SKEW_MINORS
        ]
        if behind:
            names = ", ".join(f"{name} ({version})" for name, version in behind)
            blockers.append(
                Blocker(
                    f"{MACHINE_DEPLOYMENT_KIND}/{md.name}",
                    f"has the OnDelete strategy and Machines {names} more than {KUBELET_SKEW_MINORS} "
                    f"minors behind the control plane's {highest}, which kubelets must not be",
                    "roll them first: --on-delete=replace, or delete them one at a time",
                )
            )
    return blockers


def _old_machines_note(entry: OldMachines, inventory: ClusterInventory) -> str:
    names = " ".join(entry.names)
    return (
        f"MachineDeployment/{entry.deployment} has the OnDelete strategy: Cluster API replaces a Machine "
        f"only once it is deleted, so {names} keep running {entry.what()}; roll them one at a time with "
        f"`kubectl delete machine -n {inventory.namespace} NAME`, or run again with --on-delete=replace"
    )


# -- reading the inventory ------------------------------------------------------------------------------


def _owners(
    inventory: ClusterInventory, zone_templates: ZoneTemplates | None, on_delete: OnDeleteMode
) -> tuple[_Owner, tuple[_Owner, ...]]:
    subject = f"cluster {inventory.namespace}/{inventory.name}"
    topology = inventory.cluster.topology
    if topology is not None:
        raise PlanError(
            f"{subject} is topology-managed (ClusterClass {topology.class_name or '?'})",
            hint="upgrade it by changing Cluster.spec.topology.version; its templates belong to the topology",
        )
    if inventory.problems:
        raise PlanError(
            f"cannot plan {subject}: " + "; ".join(str(p) for p in inventory.problems),
            hint="fix the references, then run again (kubectl capc describe shows the cluster)",
        )
    if inventory.control_plane is None:
        raise PlanError(f"{subject} has no KubeadmControlPlane to upgrade")
    control_plane = _owner(KUBEADM_CONTROL_PLANE_KIND, inventory.control_plane, inventory, zone_templates)
    workers = tuple(_worker(md, inventory, zone_templates, on_delete) for md in inventory.machine_deployments)
    return control_plane, workers


def _worker(
    md: MachineDeployment,
    inventory: ClusterInventory,
    zone_templates: ZoneTemplates | None,
    mode: OnDeleteMode,
) -> _Owner:
    """A MachineDeployment; with OnDelete, its own rollout is only followed with --on-delete=replace
    (with leave, nothing would ever finish it)."""
    owner = _owner(MACHINE_DEPLOYMENT_KIND, md, inventory, zone_templates)
    if not md.strategy.on_delete:
        return owner
    desired = md.replicas.desired if md.replicas.desired is not None else md.replicas.current
    return replace(
        owner,
        rolling=owner.rolling and mode is OnDeleteMode.REPLACE,
        on_delete=True,
        max_unavailable=md.strategy.unavailable_allowed(desired),
    )


def _owner(
    kind: str,
    obj: ControlPlane | MachineDeployment,
    inventory: ClusterInventory,
    zone_templates: ZoneTemplates | None,
) -> _Owner:
    if obj.machine_template is None:  # the reader records a problem for this, refused above
        raise PlanError(f"{kind} {obj.name} has no CloudStackMachineTemplate")
    try:
        version = parse_version(obj.version)
    except ValueError as err:
        raise PlanError(f"{kind} {obj.name}: {err}") from None
    return _Owner(
        kind=kind,
        name=obj.name,
        version=version,
        template=obj.machine_template.name,
        template_manifest=obj.machine_template.manifest,
        image=_image_name(obj.machine_template, inventory, zone_templates),
        resource_version=obj.resource_version,
        annotations=obj.annotations,
        rolling=obj.rollout_in_progress(),
    )


def _image_name(
    template: MachineTemplate, inventory: ClusterInventory, zone_templates: ZoneTemplates | None
) -> str:
    """The CloudStack template name a machine template uses; looked up by id when it names none."""
    image = template.cloudstack_template
    if image.name:
        return image.name
    for fd in inventory.failure_domains:
        for row in (zone_templates or {}).get(fd.name, ()):
            if row.id == image.id and row.name:
                return row.name
    raise PlanError(
        f"CloudStackMachineTemplate {template.name} names its CloudStack template by id only ({image.id}) "
        "and CloudStack did not list it",
        hint="name the template to use with --image",
    )


def _pause_blockers(inventory: ClusterInventory) -> list[Blocker]:
    hint = "remove the cluster.x-k8s.io/paused annotation or spec.paused; a paused object never rolls out"
    blockers = []
    if inventory.cluster.paused:
        blockers.append(Blocker(f"Cluster/{inventory.name}", "is paused", hint))
    cp = inventory.control_plane
    if cp is not None and cp.paused:
        blockers.append(Blocker(f"{KUBEADM_CONTROL_PLANE_KIND}/{cp.name}", "is paused", hint))
    blockers.extend(
        Blocker(f"{MACHINE_DEPLOYMENT_KIND}/{md.name}", "is paused", hint)
        for md in inventory.machine_deployments
        if md.paused
    )
    return blockers


# -- versions and images --------------------------------------------------------------------------------


def _version_hops(
    control_plane: _Owner, workers: Sequence[_Owner], target: TargetVersion, available: frozenset[KubeVersion]
) -> tuple[Hop, ...]:
    """The version hops; MachineDeployments on an older minor than the control plane catch up first.

    kubeadm joins new machines only at the control plane's minor, so such a MachineDeployment can neither
    scale nor be remediated until it is on that minor. Catching up first also makes every plan made in the
    middle of an upgrade (after a control-plane hop, before its workers followed) the rest of the plan made
    at the start, so an interrupted or re-planned run continues exactly as approved.
    """
    cp = control_plane.version
    behind = tuple(WorkerMove(md.name, md.version) for md in workers if md.version.minor < cp.minor)
    versions = {md.name: md.version for md in workers}
    if not behind:
        return plan_hops(cp, versions, target, available)
    versions.update({move.name: cp for move in behind})
    later = plan_hops(cp, versions, target, available)
    names = ", ".join(f"{move.name} ({move.current})" for move in behind)
    reason = (
        f"MachineDeployments {names} first catch up to the control plane's {cp}: kubeadm joins new machines "
        "only at the control plane's minor, so until then they can neither scale nor be remediated"
    )
    return (Hop(cp, None, behind, reason), *later)


def _goal(request: PlanRequest, available: Iterable[KubeVersion]) -> KubeVersion:
    """The exact version the plan ends at: `--to`, the version a pinned image is for, or the newest patch."""
    target = request.target
    if request.image is not None:
        pinned = parse_template_name(request.image)
        if target.exact is None:
            if pinned is None:
                raise UsageError(
                    f"--image {request.image!r} names no Kubernetes version, so --to {target} is ambiguous",
                    hint=f"give an exact version, e.g. --to {target}.0",
                )
            if (pinned.version.major, pinned.version.minor) != (target.major, target.minor):
                raise UsageError(f"--image {request.image!r} is for {pinned.version}, not {target}")
            return pinned.version
        if pinned is not None and pinned.version != target.exact:
            raise UsageError(f"--image {request.image!r} is for {pinned.version}, not {target}")
        return target.exact
    return resolve_target(target, available)


def _available_versions(
    owners: Iterable[_Owner], failure_domains: Sequence[FailureDomain], zone_templates: ZoneTemplates | None
) -> frozenset[KubeVersion]:
    """Versions with a usable template in every zone for every image line (OS + hypervisor) in use."""
    lines = {(parsed.os, parsed.hypervisor) for o in owners if (parsed := parse_template_name(o.image))}
    if not lines or zone_templates is None or not failure_domains:
        return frozenset()
    result: set[KubeVersion] | None = None
    for os_name, hypervisor in lines:
        for fd in failure_domains:
            found = _line_versions(zone_templates.get(fd.name, ()), os_name, hypervisor)
            result = set(found) if result is None else result & found
    return frozenset(result or ())


def _line_versions(
    rows: Sequence[CloudStackTemplateRow], os_name: str, hypervisor: str | None
) -> set[KubeVersion]:
    by_name: dict[str, list[CloudStackTemplateRow]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    versions = set()
    for name, copies in by_name.items():
        parsed = parse_template_name(name)
        if parsed is None or (parsed.os, parsed.hypervisor) != (os_name, hypervisor) or len(copies) != 1:
            continue
        if classify_copy(copies[0].ready, copies[0].status) in (CopyState.READY, CopyState.IN_PROGRESS):
            versions.add(parsed.version)
    return versions


def _zone_images(
    image: str, failure_domains: Sequence[FailureDomain], zone_templates: ZoneTemplates | None
) -> tuple[ZoneImage, ...]:
    zones = []
    for fd in failure_domains:
        zone = fd.zone.name or fd.zone.id
        if zone_templates is None or fd.name not in zone_templates:
            zones.append(ZoneImage(fd.name, zone, ZoneState.NOT_CHECKED))
            continue
        copies = [row for row in zone_templates[fd.name] if row.name == image]
        if not copies:
            zones.append(ZoneImage(fd.name, zone, ZoneState.MISSING))
        elif len(copies) > 1:
            ids = ", ".join(row.id for row in copies)
            zones.append(ZoneImage(fd.name, zone, ZoneState.DUPLICATE, status=f"{len(copies)} copies: {ids}"))
        else:
            row = copies[0]
            state = {
                CopyState.READY: ZoneState.READY,
                CopyState.IN_PROGRESS: ZoneState.IN_PROGRESS,
                # An upload whose file never arrived is as good as missing: registering replaces it.
                CopyState.ABANDONED_UPLOAD: ZoneState.MISSING,
            }.get(classify_copy(row.ready, row.status), ZoneState.FAILED)
            zones.append(ZoneImage(fd.name, zone, state, row.id, row.status))
    return tuple(zones)


# -- machine templates ----------------------------------------------------------------------------------


def comparable_spec(spec: Any) -> Any:
    """A CloudStackMachineTemplate spec with Go zero values dropped, for "same spec?" comparisons.

    Go clients write `sshKey: ""` and an all-empty `diskOffering`; kubectl-made objects omit them. Both
    mean the same to CAPC, so unset, empty and zero compare equal.
    """
    if isinstance(spec, Mapping):
        items = {key: comparable_spec(value) for key, value in spec.items()}
        return {key: value for key, value in items.items() if value not in (None, "", 0, False, {}, [])}
    if isinstance(spec, (list, tuple)):
        return [comparable_spec(item) for item in spec]
    return spec


def clone_machine_template(
    source: Mapping[str, Any], *, name: str, image: str, version: KubeVersion, cluster: str
) -> dict[str, Any]:
    """A new CloudStackMachineTemplate: `source` with a new name and only the CloudStack template changed.

    Keeps spec (offering, disk offering, details, networks, affinity, SSH key, user-data compression),
    labels, annotations and the owner reference to the Cluster; drops server-set fields, status and
    annotations that describe the source itself; records where it came from.
    """
    clone: dict[str, Any] = thaw(source)
    old_meta = clone.get("metadata") or {}
    meta: dict[str, Any] = {"name": name}
    meta.update({key: old_meta[key] for key in _KEPT_METADATA if old_meta.get(key)})
    owners = [ref for ref in meta.pop("ownerReferences", []) if ref.get("kind") == "Cluster"]
    if owners:
        meta["ownerReferences"] = owners
    annotations = {
        key: value
        for key, value in (meta.get("annotations") or {}).items()
        if key not in _DROPPED_ANNOTATIONS and not key.startswith(PREFIX)
    }
    annotations[CLONED_FROM] = str(old_meta.get("name", ""))
    annotations[KUBERNETES_VERSION] = str(version)
    meta["annotations"] = annotations
    meta["labels"] = {**(meta.get("labels") or {}), CLUSTER_NAME_LABEL: cluster}
    clone["metadata"] = meta
    clone.pop("status", None)
    machine_spec = clone.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})
    machine_spec["template"] = {"name": image}
    return clone


# -- building the hops ----------------------------------------------------------------------------------


class _Builder:
    """Walks the version hops, tracking each object's planned state, and emits the steps of each hop."""

    def __init__(
        self,
        inventory: ClusterInventory,
        request: PlanRequest,
        zone_templates: ZoneTemplates | None,
        goal: KubeVersion,
    ) -> None:
        self.inventory = inventory
        self.request = request
        self.zone_templates = zone_templates
        self.goal = goal
        self.blockers: list[Blocker] = []
        self._existing = {t.name: _spec_of(t.manifest) for t in inventory.namespace_templates}
        self._planned: dict[str, CreateMachineTemplate] = {}
        self._by_source: dict[tuple[str, str, KubeVersion], CreateMachineTemplate] = {}
        self._emitted: set[str] = set()

    def build(
        self, control_plane: _Owner, workers: tuple[_Owner, ...], version_hops: Sequence[Hop]
    ) -> tuple[PlanHop, ...]:
        hops = list(version_hops)
        rotation = self._rotation(control_plane, workers, hops)
        if rotation and not hops:
            hops.append(Hop(self.goal, None, (), f"image change at {self.goal}"))
        # Rollouts already running (an interrupted run's, or anyone's) finish before anything new starts,
        # so a resumed run keeps the order and the --parallel limit of the plan it continues.
        settling = [md for md in workers if md.rolling]
        if not hops and (control_plane.rolling or settling):
            hops.append(Hop(self.goal, None, (), "a rollout started earlier is still in progress"))
        state = {o.name: o for o in (control_plane, *workers)}
        result = []
        for index, hop in enumerate(hops):
            last = index == len(hops) - 1
            steps: list[Step] = []
            if index == 0:
                steps += _waits_in_progress(
                    KUBEADM_CONTROL_PLANE_KIND, [control_plane] if control_plane.rolling else []
                )
                steps += _waits_in_progress(
                    MACHINE_DEPLOYMENT_KIND, [md for md in settling if not md.on_delete]
                )
                steps += [
                    self._roll_on_delete(md, md.version, md.template) for md in settling if md.on_delete
                ]
            cp_moves = hop.moves_control_plane or (last and control_plane.name in rotation)
            md_names = sorted(
                {w.name for w in hop.workers}
                | ({n for n in rotation if n != control_plane.name} if last else set())
            )
            movers = ([state[control_plane.name]] if cp_moves else []) + [state[n] for n in md_names]
            changes = {m.name: self._change(m, hop.version) for m in movers}
            steps += self._image_steps(changes.values())
            steps += self._template_steps(changes.values())
            if cp_moves:
                cp = state[control_plane.name]
                steps += [
                    _patch(cp, changes[cp.name]),
                    _wait(KUBEADM_CONTROL_PLANE_KIND, [cp.name], hop.version),
                ]
            for start in range(0, len(md_names), self.request.parallel):
                batch = md_names[start : start + self.request.parallel]
                steps += [self._patch(state[name], changes[name]) for name in batch]
                rolling = [name for name in batch if not state[name].on_delete]
                if rolling:
                    steps.append(_wait(MACHINE_DEPLOYMENT_KIND, rolling, hop.version))
                steps += [
                    self._roll_on_delete(state[name], hop.version, changes[name].name)
                    for name in batch
                    if state[name].on_delete
                ]
            for mover in movers:
                change = changes[mover.name]
                state[mover.name] = replace(
                    mover,
                    version=hop.version,
                    template=change.name,
                    template_manifest=change.manifest,
                    image=change.image,
                    rolling=False,
                )
            reason = hop.reason + (_rotation_reason(movers, rotation) if last else "")
            result.append(PlanHop(index + 1, hop.version, reason, tuple(steps)))
        return tuple(result)

    def _patch(self, owner: _Owner, change: CreateMachineTemplate) -> PatchObject:
        step = _patch(owner, change)
        return replace(step, on_delete=self.request.on_delete.value) if owner.on_delete else step

    def _roll_on_delete(self, owner: _Owner, version: KubeVersion, template: str) -> RollOnDelete:
        """What happens to an OnDelete deployment's Machines once it asks for `version` and `template`."""
        md = next(m for m in self.inventory.machine_deployments if m.name == owner.name)
        old = tuple(m.name for m in self.inventory.machines_behind(md, (str(version), template)))
        return RollOnDelete(
            owner.name, str(version), self.request.on_delete, old, owner.max_unavailable, template=template
        )

    def _rotation(
        self, control_plane: _Owner, workers: Sequence[_Owner], hops: Sequence[Hop]
    ) -> dict[str, str]:
        """Objects no hop moves that are at the goal version on another image than wanted: name -> image.

        A pinned --image, or a template whose name is not the convention's for its version, puts them here.
        """
        moved = {w.name for h in hops for w in h.workers}
        if any(h.moves_control_plane for h in hops):
            moved.add(control_plane.name)
        result = {}
        for owner in (control_plane, *workers):
            if owner.name not in moved and owner.version == self.goal:
                wanted = self._wanted_image(owner, self.goal)
                if wanted != owner.image:
                    result[owner.name] = wanted
        return result

    def _wanted_image(self, owner: _Owner, version: KubeVersion) -> str:
        if version == self.goal and self.request.image is not None:
            return self.request.image
        return template_name_for(owner.image, version)

    def _change(self, owner: _Owner, version: KubeVersion) -> CreateMachineTemplate:
        """The machine template `owner` moves to at `version`: one per source template, image and version.

        Its name is derived from the source's; a name taken by a template with another spec moves on to
        the next free one, and a template that already has the wanted spec is reused.
        """
        image = self._wanted_image(owner, version)
        key = (owner.template, image, version)
        if key not in self._by_source:
            preferred = machine_template_name(owner.template, version)
            manifest = clone_machine_template(
                owner.template_manifest,
                name=preferred,
                image=image,
                version=version,
                cluster=self.inventory.name,
            )
            spec = comparable_spec(manifest.get("spec", {}))
            known = {**self._existing, **{n: _spec_of(c.manifest) for n, c in self._planned.items()}}
            name = next_free_name(preferred, {n for n, other in known.items() if other != spec})
            if name not in self._planned:
                manifest["metadata"]["name"] = name
                self._planned[name] = CreateMachineTemplate(
                    name=name,
                    cloned_from=owner.template,
                    image_from=owner.image,
                    image=image,
                    version=version,
                    manifest=freeze(manifest),
                    exists=name in self._existing,
                    note="" if name == preferred else f"{preferred} exists with another spec",
                    source_manifest=owner.template_manifest,
                )
            self._by_source[key] = self._planned[name]
        return self._by_source[key]

    def _image_steps(self, changes: Iterable[CreateMachineTemplate]) -> list[Step]:
        steps: list[Step] = []
        versions = {c.image: c.version for c in changes}
        for image in sorted(versions):
            zones = _zone_images(image, self.inventory.failure_domains, self.zone_templates)
            step = EnsureImage(image, versions[image], zones, self.request.image_source)
            self.blockers.extend(self._image_blockers(step))
            steps.append(step)
        return steps

    def _image_blockers(self, step: EnsureImage) -> list[Blocker]:
        subject = f"CloudStack template {step.image}"
        register = f"kubectl capc image register --cluster {self.inventory.name} --version {step.version}"
        blockers = [
            Blocker(
                subject,
                f"{z.status} in zone {z.zone}",
                "CAPC needs exactly one per zone: delete the extra ones",
            )
            for z in step.zones_in(ZoneState.DUPLICATE)
        ]
        blockers += [
            Blocker(subject, f"failed in zone {z.zone}: {z.status}", f"{register} --prebuilt --replace")
            for z in step.zones_in(ZoneState.FAILED)
        ]
        missing = step.zones_in(ZoneState.MISSING)
        if missing and step.source is ImageSource.EXISTING:
            blockers.append(
                Blocker(
                    subject,
                    "missing in zone " + ", ".join(z.zone for z in missing),
                    f"register it with `{register} --prebuilt` (or --url URL), "
                    "or re-run with --image-source prebuilt|url|build",
                )
            )
        return blockers

    def _template_steps(self, changes: Iterable[CreateMachineTemplate]) -> list[Step]:
        steps: list[Step] = []
        for change in sorted(set(changes), key=lambda c: c.name):
            if change.name not in self._emitted:
                self._emitted.add(change.name)
                steps.append(change)
        return steps


def _spec_of(manifest: Mapping[str, Any]) -> Any:
    return comparable_spec(thaw(manifest.get("spec", {})))


def _patch(owner: _Owner, change: CreateMachineTemplate) -> PatchObject:
    return PatchObject(
        kind=owner.kind,
        name=owner.name,
        version_from=str(owner.version),
        version_to=str(change.version),
        template_from=owner.template,
        template_to=change.name,
        image_from=owner.image,
        image_to=change.image,
        resource_version=owner.resource_version,
        annotations=owner.annotations,
    )


def _wait(kind: str, names: Sequence[str], version: KubeVersion) -> WaitRollout:
    return WaitRollout(kind, tuple(names), str(version))


def _waits_in_progress(kind: str, owners: Sequence[_Owner]) -> list[Step]:
    """Wait for rollouts already running when the plan was made (e.g. by an interrupted run)."""
    by_version: dict[KubeVersion, list[str]] = {}
    for owner in owners:
        by_version.setdefault(owner.version, []).append(owner.name)
    return [
        WaitRollout(kind, tuple(names), str(version), "a rollout is already in progress")
        for version, names in sorted(by_version.items())
    ]


def _rotation_reason(movers: Sequence[_Owner], rotation: Mapping[str, str]) -> str:
    rotated = [m for m in movers if m.name in rotation]
    if not rotated:
        return ""
    return "; " + ", ".join(f"{m.name} changes image {m.image} → {rotation[m.name]}" for m in rotated)
