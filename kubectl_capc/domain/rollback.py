"""What `kubectl capc rollback` would do, decided from the cluster alone (pure).

`plan_rollback` reads the history recorded on the KubeadmControlPlane and each MachineDeployment
(`kubectl_capc.domain.records`), chooses what may go back and refuses the rest with the reason.
Kubernetes does not support going back over a completed control-plane minor upgrade (etcd and the API
storage may already use the new version), so the control plane goes back only after an image-only or
same-minor change, or while its rollout has not completed (a machine still runs the old minor). A
MachineDeployment goes back to its recorded version and template only if that stays within the skew of
the control plane's version: kubeadm joins new machines only at the control plane's minor, and a
kubelet must never be newer than the API server. `kubectl_capc.ops.rollback` executes the plan.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.model import (
    KUBEADM_CONTROL_PLANE_KIND,
    CapiVersion,
    ClusterInventory,
    ControlPlane,
    FrozenDict,
    MachineDeployment,
    MachineTemplate,
    normalize_version,
)
from kubectl_capc.domain.plan import MACHINE_DEPLOYMENT_KIND, PatchObject, WaitRollout
from kubectl_capc.domain.records import ACTION_ROLLBACK, Rotation, read_history
from kubectl_capc.domain.versions import KubeVersion, parse_version, version_or_none

__all__ = [
    "KIND",
    "GoBack",
    "Refusal",
    "RollbackPlan",
    "plan_rollback",
]

KIND = "RollbackPlan"

_ROLL_FORWARD = "roll forward instead: fix the cause and run `kubectl capc image-upgrade` again"
_RESTORE = _ROLL_FORWARD + ", or restore the control plane from an etcd backup"


@dataclass(frozen=True)
class GoBack(PatchObject):
    """One object pointed back at its previous version and template, and why that is allowed."""

    action: ClassVar[str] = "RollBack"
    reason: str = field(default="", compare=False)

    def to_document(self) -> dict[str, Any]:
        return {**super().to_document(), "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class Refusal:
    """An object that does not go back, and why."""

    subject: str
    reason: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


@dataclass(frozen=True)
class RollbackPlan:
    """Everything `rollback` would do to one cluster (`kind: RollbackPlan`), in execution order."""

    namespace: str
    cluster: str
    capi_version: CapiVersion
    control_plane_version: str
    steps: tuple[GoBack | WaitRollout, ...]
    refusals: tuple[Refusal, ...] = ()
    rolled_back: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def writes(self) -> tuple[GoBack, ...]:
        return tuple(step for step in self.steps if isinstance(step, GoBack))

    @property
    def changes_pending(self) -> bool:
        return bool(self.writes)

    @property
    def done(self) -> bool:
        """Nothing to patch and nothing to wait for."""
        return not self.steps

    def covered_by(self, approved: RollbackPlan) -> bool:
        """Every write of this plan was part of `approved` (so it needs no new confirmation)."""
        allowed = set(approved.writes)
        return all(step in allowed for step in self.writes)

    def to_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.cluster, "namespace": self.namespace},
            "status": {
                "capiVersion": self.capi_version,
                "controlPlaneVersion": self.control_plane_version,
                "changesPending": self.changes_pending,
                "steps": [step.to_document() for step in self.steps],
                "alreadyRolledBack": list(self.rolled_back),
                "refused": [
                    {"object": r.subject, "reason": r.reason, **({"hint": r.hint} if r.hint else {})}
                    for r in self.refusals
                ],
                "notes": list(self.notes),
            },
        }

    def table_rows(self) -> list[tuple[str, str, str, str]]:
        """ACTION, OBJECT, CHANGE, WHY rows; refused objects last."""
        rows = [
            (step.action, step.subject, step.summary(), step.reason if isinstance(step, GoBack) else "")
            for step in self.steps
        ]
        rows += [("Refused", r.subject, "stays as it is", r.reason) for r in self.refusals]
        return rows


# -- the decision -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Owner:
    """A KubeadmControlPlane or MachineDeployment with what its newest record says."""

    kind: str
    obj: ControlPlane | MachineDeployment
    last: Rotation | None

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.obj.name}"

    @property
    def template(self) -> str:
        return self.obj.infrastructure_ref.name

    def matches(self, version: str, template: str) -> bool:
        return (normalize_version(self.obj.version), self.template) == (normalize_version(version), template)


@dataclass
class _Decisions:
    """What each object does, filled while deciding."""

    refusals: dict[str, Refusal] = field(default_factory=dict)
    rolled_back: list[str] = field(default_factory=list)
    waits: list[_Owner] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_rollback(inventory: ClusterInventory) -> RollbackPlan:
    """What may go back in `inventory`'s cluster, in order; refusals say why the rest stays.

    Raises PlanError when nothing can be judged: a topology-managed or paused cluster, no control plane,
    or no rotation recorded on any object.
    """
    subject = f"cluster {inventory.namespace}/{inventory.name}"
    if inventory.cluster.topology_managed:
        raise PlanError(
            f"{subject} is topology-managed", hint="roll it back through Cluster.spec.topology.version"
        )
    if inventory.cluster.paused:
        raise PlanError(f"{subject} is paused", hint="a paused cluster never rolls out; unpause it first")
    cp = inventory.control_plane
    if cp is None:
        problems = "; ".join(str(p) for p in inventory.problems) or "no KubeadmControlPlane"
        raise PlanError(
            f"cannot roll back {subject}: {problems}",
            hint="fix the references, then run again (kubectl capc describe shows the cluster)",
        )
    owners = [_Owner(KUBEADM_CONTROL_PLANE_KIND, cp, _newest(cp.annotations))] + [
        _Owner(MACHINE_DEPLOYMENT_KIND, md, _newest(md.annotations)) for md in inventory.machine_deployments
    ]
    if all(owner.last is None for owner in owners):
        raise PlanError(
            f"nothing to roll back: no upgrade is recorded on the objects of {subject}",
            hint="`kubectl capc history` lists what is recorded",
        )
    decisions = _Decisions(notes=[str(p) for p in inventory.problems])
    candidates: dict[str, GoBack] = {}
    for owner in owners:
        candidate = _candidate(owner, inventory, decisions)
        if candidate is not None:
            candidates[owner.subject] = candidate
    control_plane, workers = owners[0], owners[1:]
    cp_move = candidates.get(control_plane.subject)
    if cp_move is not None:
        verdict = _control_plane_verdict(control_plane.subject, cp, cp_move, inventory)
        if isinstance(verdict, Refusal):
            decisions.refusals[control_plane.subject] = verdict
            cp_move = None
        else:
            cp_move = verdict
    try:
        current_cp = parse_version(cp.version)
    except ValueError as err:
        raise PlanError(f"{control_plane.subject}: {err}") from None
    worker_moves, worker_refusals = _decide_workers(workers, candidates, _target(cp_move) or current_cp)
    if cp_move is not None:
        blocker = _worker_newer_than(control_plane.subject, workers, worker_moves, _target(cp_move))
        blocker = blocker or _on_delete_machines_newer_than(
            control_plane.subject, inventory, _target(cp_move)
        )
        if blocker is not None:
            decisions.refusals[control_plane.subject] = blocker
            cp_move = None
            worker_moves, worker_refusals = _decide_workers(workers, candidates, current_cp)
    decisions.refusals.update(worker_refusals)
    on_delete = frozenset(md.name for md in inventory.machine_deployments if md.strategy.on_delete)
    decisions.notes += [
        _on_delete_note(inventory, move) for move in worker_moves.values() if move.name in on_delete
    ]
    steps = _ordered_steps(control_plane, cp_move, worker_moves, decisions.waits, on_delete)
    return RollbackPlan(
        namespace=inventory.namespace,
        cluster=inventory.name,
        capi_version=inventory.capi_version,
        control_plane_version=cp.version,
        steps=steps,
        refusals=tuple(decisions.refusals[o.subject] for o in owners if o.subject in decisions.refusals),
        rolled_back=tuple(decisions.rolled_back),
        notes=tuple(decisions.notes),
    )


def _newest(annotations: Mapping[str, str]) -> Rotation | None:
    history = read_history(annotations)
    return history[0] if history else None


def _candidate(owner: _Owner, inventory: ClusterInventory, decisions: _Decisions) -> GoBack | None:
    """The move back from `owner`'s newest recorded upgrade, if the record still describes the object."""
    last = owner.last
    if last is None:
        decisions.notes.append(f"{owner.subject}: no upgrade recorded; it stays as it is")
        return None
    if last.action == ACTION_ROLLBACK:
        if owner.matches(last.to_version, last.to_template):
            decisions.rolled_back.append(owner.subject)
            if owner.obj.rollout_in_progress():
                decisions.waits.append(owner)
        else:
            decisions.refusals[owner.subject] = _changed_since(owner, last)
        return None
    if not owner.matches(last.to_version, last.to_template):
        decisions.refusals[owner.subject] = _changed_since(owner, last)
        return None
    if owner.obj.paused:
        decisions.refusals[owner.subject] = Refusal(
            owner.subject, "is paused: it would never roll out", "unpause it first"
        )
        return None
    previous = inventory.template_named(last.from_template)
    if previous is None:
        decisions.refusals[owner.subject] = Refusal(
            owner.subject,
            f"its previous CloudStackMachineTemplate {last.from_template} no longer exists",
            "it was deleted (e.g. by `kubectl capc cleanup`); recreate it to go back",
        )
        return None
    for version in (last.from_version, last.to_version):
        try:
            parse_version(version)
        except ValueError as err:
            decisions.refusals[owner.subject] = Refusal(owner.subject, f"recorded {err}")
            return None
    current = inventory.template_named(owner.template)
    return GoBack(
        kind=owner.kind,
        name=owner.obj.name,
        version_from=owner.obj.version,
        version_to=normalize_version(last.from_version),
        template_from=owner.template,
        template_to=last.from_template,
        image_from=_image(current) or last.to_image,
        image_to=_image(previous) or last.from_image,
        resource_version=owner.obj.resource_version,
        annotations=FrozenDict(owner.obj.annotations),
        reason=_change_kind(parse_version(last.from_version), parse_version(last.to_version)),
    )


def _changed_since(owner: _Owner, last: Rotation) -> Refusal:
    return Refusal(
        owner.subject,
        f"was changed after its last recorded {last.action} (it is at {owner.obj.version} with "
        f"{owner.template}; the record says {last.to_version} with {last.to_template})",
        "only a change kubectl capc recorded can be rolled back",
    )


def _image(template: MachineTemplate | None) -> str:
    return template.cloudstack_template.name if template is not None else ""


def _change_kind(previous: KubeVersion, current: KubeVersion) -> str:
    if previous == current:
        return "image-only change"
    if (previous.major, previous.minor) == (current.major, current.minor):
        return f"same-minor change {previous} → {current}"
    return f"minor change {previous} → {current}"


def _target(move: GoBack | None) -> KubeVersion | None:
    return parse_version(move.version_to) if move is not None else None


def _control_plane_verdict(
    subject: str, cp: ControlPlane, move: GoBack, inventory: ClusterInventory
) -> GoBack | Refusal:
    """`move` (with the reason it is allowed) when the control plane may go back, else the refusal.

    After a minor change it may only while some machine still runs the old minor.
    """
    previous, current = parse_version(move.version_to), parse_version(move.version_from)
    if (previous.major, previous.minor) == (current.major, current.minor):
        return move
    running = _running_versions(cp, inventory)
    if not running:
        return Refusal(
            subject,
            f"cannot tell whether its minor upgrade to {current} completed: no running version is reported",
            "wait for the controller to report status.version, then run again",
        )
    old = sorted({str(v) for v in running if (v.major, v.minor) != (current.major, current.minor)})
    if old:
        return replace(
            move, reason=f"{move.reason}; rollout not completed (machines still run {', '.join(old)})"
        )
    return Refusal(
        subject,
        f"completed its minor upgrade {previous} → {current}: Kubernetes does not support downgrading a "
        "control plane by a minor version",
        _RESTORE,
    )


def _running_versions(cp: ControlPlane, inventory: ClusterInventory) -> list[KubeVersion]:
    """The versions the control plane's machines run: as its status reports them, else from Machines."""
    texts = list(cp.versions_reported) or [
        m.version for m in inventory.control_plane_machines() if not m.deleting
    ]
    versions = []
    for text in texts:
        try:
            versions.append(parse_version(text))
        except ValueError:
            continue
    return versions


def _decide_workers(
    workers: Sequence[_Owner], candidates: Mapping[str, GoBack], control_plane: KubeVersion
) -> tuple[dict[str, GoBack], dict[str, Refusal]]:
    """Which MachineDeployments go back with the control plane at `control_plane`, and why others don't."""
    moves: dict[str, GoBack] = {}
    refusals: dict[str, Refusal] = {}
    for owner in workers:
        move = candidates.get(owner.subject)
        if move is None:
            continue
        target = parse_version(move.version_to)
        if (target.major, target.minor) != (control_plane.major, control_plane.minor):
            refusals[owner.subject] = Refusal(
                owner.subject,
                f"going back to {target} would leave it outside the kubeadm skew of the control plane at "
                f"{control_plane}: kubeadm joins new machines only at the control plane's minor",
                _ROLL_FORWARD if target < control_plane else "",
            )
        elif target > control_plane:
            refusals[owner.subject] = Refusal(
                owner.subject,
                f"going back to {target} would make it newer than the control plane at {control_plane}: "
                "a kubelet must not be newer than the API server",
            )
        else:
            moves[owner.subject] = move
    return moves, refusals


def _worker_newer_than(
    subject: str, workers: Sequence[_Owner], moves: Mapping[str, GoBack], control_plane: KubeVersion | None
) -> Refusal | None:
    """A refusal for the control plane if a MachineDeployment that stays would be newer than it."""
    if control_plane is None:
        return None
    for owner in workers:
        if owner.subject in moves:
            continue
        try:
            version = parse_version(owner.obj.version)
        except ValueError:
            continue
        if version > control_plane:
            return Refusal(
                subject,
                f"going back to {control_plane} would leave {owner.subject}, which stays at {version}, newer "
                "than the control plane: a kubelet must not be newer than the API server",
            )
    return None


def _on_delete_machines_newer_than(
    subject: str, inventory: ClusterInventory, control_plane: KubeVersion | None
) -> Refusal | None:
    """A refusal for the control plane while Machines of an OnDelete MachineDeployment, which keep their
    version until they are deleted, run a newer one than it would."""
    if control_plane is None:
        return None
    for md in inventory.machine_deployments:
        if not md.strategy.on_delete:
            continue
        newer = [
            m.name
            for m in inventory.machines_of(md)
            if not m.deleting and (v := version_or_none(m.version)) is not None and v > control_plane
        ]
        if newer:
            return Refusal(
                subject,
                f"going back to {control_plane} would leave Machines {' '.join(sorted(newer))} of "
                f"{MACHINE_DEPLOYMENT_KIND}/{md.name} (OnDelete: replaced only once deleted) newer than the "
                "control plane: a kubelet must not be newer than the API server",
                f"delete them one at a time (`kubectl delete machine -n {inventory.namespace} NAME`) once "
                "their deployment has gone back, then run rollback again",
            )
    return None


def _on_delete_note(inventory: ClusterInventory, move: GoBack) -> str:
    md = next(md for md in inventory.machine_deployments if md.name == move.name)
    behind = sorted(m.name for m in inventory.machines_behind(md, (move.version_to, move.template_to)))
    note = (
        f"{MACHINE_DEPLOYMENT_KIND}/{move.name} has the OnDelete strategy: it is patched and not waited "
        "for, since Cluster API replaces a Machine only once it is deleted"
    )
    if not behind:
        return note
    return (
        f"{note}; {' '.join(behind)} keep running their version: roll them one at a time with "
        f"`kubectl delete machine -n {inventory.namespace} NAME`"
    )


def _ordered_steps(
    control_plane: _Owner,
    cp_move: GoBack | None,
    worker_moves: Mapping[str, GoBack],
    waits: Sequence[_Owner],
    on_delete: Collection[str],
) -> tuple[GoBack | WaitRollout, ...]:
    """Rollouts already going back first; then MachineDeployments before the control plane, so no kubelet
    is ever newer than the API server, unless the control plane's own rollout is unfinished: then it
    goes first, as MachineSets create no machines while the control plane is upgrading. Deployments
    named in `on_delete` (the OnDelete strategy) are patched and not waited for: Cluster API replaces
    their Machines only once they are deleted."""
    steps: list[GoBack | WaitRollout] = []
    for owner in waits:
        if owner.kind == MACHINE_DEPLOYMENT_KIND and owner.obj.name in on_delete:
            continue
        steps.append(
            WaitRollout(owner.kind, (owner.obj.name,), owner.obj.version, "the rollback is still rolling out")
        )
    cp_steps: list[GoBack | WaitRollout] = []
    if cp_move is not None:
        cp_steps = [cp_move, WaitRollout(cp_move.kind, (cp_move.name,), cp_move.version_to)]
    worker_steps: list[GoBack | WaitRollout] = []
    for move in (worker_moves[name] for name in sorted(worker_moves)):
        worker_steps.append(move)
        if move.name not in on_delete:
            worker_steps.append(WaitRollout(move.kind, (move.name,), move.version_to))
    control_plane_first = cp_move is not None and control_plane.obj.rollout_in_progress()
    if control_plane_first:
        return (*steps, *cp_steps, *worker_steps)
    return (*steps, *worker_steps, *cp_steps)
