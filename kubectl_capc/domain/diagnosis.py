"""The rollout doctor: per control plane and MachineDeployment, how far the rollout got and, for each
machine that is not progressing, the one cause that holds it up.

Inputs are plain data gathered by the adapters: Machines (both Cluster API shapes), CloudStackMachines,
the workload cluster's Pods and PodDisruptionBudgets (when reachable), and template readiness per zone.
Causes are looked for from the root down: a template that is not ready explains a VM in Error, which
explains a node that never joined, so the first that applies is the one reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubectl_capc.domain.checks.workload import Pod, PodDisruptionBudget, WorkloadFacts
from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.model import built_from_another
from kubectl_capc.domain.versions import parse_version

__all__ = [
    "InfraMachine",
    "MachineStatus",
    "OwnerSpec",
    "OwnerStatus",
    "RolloutStatus",
    "TemplateReadiness",
    "diagnose",
]

_PDB_MESSAGE = re.compile(
    r"disruption budget (?P<name>\S+) needs (?P<needs>\d+) healthy pods? and has (?P<has>\d+)"
)
# A pod as CAPI lists it in a drain message (`namespace/name`): CAPI v1.11 and newer put the pods before
# the eviction error on its line (`* Pod ns/web-1: cannot evict ...`), older releases after it.
_LISTED_POD = re.compile(r"(?<![\w./-])(?P<namespace>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)/[a-z0-9][-a-z0-9.]*")


@dataclass(frozen=True)
class OwnerSpec:
    """A KubeadmControlPlane or MachineDeployment, the version its spec asks for and the
    CloudStackMachineTemplate it points at (empty: not compared)."""

    kind: str
    namespace: str
    name: str
    version: str
    template: str = ""


@dataclass(frozen=True)
class InfraMachine:
    """A CloudStackMachine: the VM's state and CAPC's failure message, and the template and zone it uses."""

    instance_state: str = ""
    failure_message: str = ""
    template: str = ""
    zone: str = ""


@dataclass(frozen=True)
class TemplateReadiness:
    ready: bool
    status: str = ""  # what CloudStack shows, e.g. "45% Downloaded"


@dataclass(frozen=True)
class MachineStatus:
    name: str
    version: str
    phase: str
    node: str
    up_to_date: bool
    cause: str  # empty while the machine progresses or is done

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "phase": self.phase,
            "node": self.node or None,
            "upToDate": self.up_to_date,
            "cause": self.cause or None,
        }


@dataclass(frozen=True)
class OwnerStatus:
    kind: str
    name: str
    version: str
    machines: tuple[MachineStatus, ...]

    @property
    def on_new(self) -> int:
        return sum(1 for m in self.machines if m.up_to_date)

    @property
    def on_old(self) -> int:
        return len(self.machines) - self.on_new

    @property
    def blocked(self) -> tuple[MachineStatus, ...]:
        return tuple(m for m in self.machines if m.cause)

    def to_document(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "machines": {"total": len(self.machines), "new": self.on_new, "old": self.on_old},
            "machineStatus": [m.to_document() for m in self.machines],
        }


@dataclass(frozen=True)
class RolloutStatus:
    """The doctor's verdict for one cluster, as a table (`rows`) or a document (`to_document`)."""

    namespace: str
    cluster: str
    owners: tuple[OwnerStatus, ...]

    @property
    def blocked(self) -> bool:
        return any(owner.blocked for owner in self.owners)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """OWNER, MACHINE, VERSION, PHASE, CAUSE: one row per owner (its new/old counts), then one per
        machine with a cause."""
        rows = []
        for owner in self.owners:
            rows.append(
                (
                    f"{owner.kind}/{owner.name}",
                    "",
                    owner.version,
                    f"{owner.on_new} new, {owner.on_old} old",
                    "",
                )
            )
            rows.extend(("", m.name, m.version, m.phase, m.cause) for m in owner.blocked)
        return rows

    def to_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "RolloutStatus",
            "cluster": {"namespace": self.namespace, "name": self.cluster},
            "blocked": self.blocked,
            "owners": [owner.to_document() for owner in self.owners],
        }


def diagnose(
    namespace: str,
    cluster: str,
    owners: Sequence[OwnerSpec],
    machines: Sequence[Machine],
    *,
    infra: Mapping[str, InfraMachine],
    workload: WorkloadFacts | None,
    templates: Mapping[tuple[str, str], TemplateReadiness],
    now: datetime,
    join_timeout: timedelta = timedelta(minutes=10),
    built_from: Mapping[str, str] | None = None,
) -> RolloutStatus:
    """`infra` is keyed by Machine name, `templates` by (template name, zone name); `workload` is None
    when the workload cluster could not be read (drain causes then come from the Machine alone).
    `built_from` names the CloudStackMachineTemplate each Machine was built from: a Machine at its
    owner's version built from another template than the owner's is old too (a change of image)."""
    built = built_from or {}
    statuses = []
    for owner in owners:
        mine = sorted(
            (m for m in machines if (m.owner_kind, m.owner_name) == (owner.kind, owner.name)),
            key=lambda m: m.name,
        )
        statuses.append(
            OwnerStatus(
                owner.kind,
                owner.name,
                owner.version,
                tuple(
                    MachineStatus(
                        m.name,
                        m.version,
                        m.phase,
                        m.node_ref,
                        _same_version(m.version, owner.version)
                        and not built_from_another(built.get(m.name, ""), owner.template),
                        _cause(
                            m,
                            infra.get(m.name, InfraMachine()),
                            workload=workload,
                            templates=templates,
                            now=now,
                            join_timeout=join_timeout,
                        ),
                    )
                    for m in mine
                ),
            )
        )
    return RolloutStatus(namespace, cluster, tuple(statuses))


def _same_version(a: str, b: str) -> bool:
    try:
        return parse_version(a) == parse_version(b)
    except ValueError:
        return a == b


def _cause(
    machine: Machine,
    infra: InfraMachine,
    *,
    workload: WorkloadFacts | None,
    templates: Mapping[tuple[str, str], TemplateReadiness],
    now: datetime,
    join_timeout: timedelta,
) -> str:
    if machine.deleting_since is not None:
        return _deletion_cause(machine, workload)
    template = templates.get((infra.template, infra.zone))
    if not machine.node_ref and template is not None and not template.ready:
        status = f" ({template.status})" if template.status else ""
        return f"template {infra.template} not ready in zone {infra.zone}{status}"
    if infra.instance_state == "Error":
        return f"VM in Error state: {infra.failure_message or 'no CloudStack error recorded'}"
    if infra.instance_state == "Stopped":
        return "VM is Stopped"
    if infra.failure_message:
        return f"CloudStack error: {infra.failure_message}"
    remediated = machine.condition("OwnerRemediated")
    if remediated is not None and remediated.status == "False":
        return "MachineHealthCheck remediation in progress"
    if not machine.node_ref and machine.created is not None and now - machine.created > join_timeout:
        return f"node never joined (no nodeRef after {_elapsed(now - machine.created)})"
    return ""


def _elapsed(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{seconds // 60} minutes"


def _deletion_cause(machine: Machine, workload: WorkloadFacts | None) -> str:
    deleting = machine.condition("Deleting")  # v1beta2
    reason = deleting.reason if deleting is not None and deleting.status == "True" else ""
    drain = machine.condition("DrainingSucceeded")  # v1beta1
    draining = reason == "DrainingNode" or (
        drain is not None and drain.status == "False" and drain.reason in ("Draining", "DrainingFailed")
    )
    volumes = machine.condition("VolumeDetachSucceeded")  # v1beta1
    if draining:
        message = (deleting.message if reason == "DrainingNode" and deleting else "") or (
            drain.message if drain else ""
        )
        return _drain_cause(machine, workload, message)
    if reason == "WaitingForVolumeDetach" or (volumes is not None and volumes.status == "False"):
        since = machine.volume_detach_started
        return "waiting for volume detach" + (f" since {since.isoformat()}" if since else "")
    return f"deleting: {reason}" if reason and reason != "DeletionCompleted" else ""


def _drain_cause(machine: Machine, workload: WorkloadFacts | None, message: str) -> str:
    if workload is not None and not workload.unreachable and machine.node_ref:
        pdb = _blocking_pdb(machine.node_ref, workload.pods, workload.pdbs)
        if pdb is not None:
            return (
                f"drain blocked by PodDisruptionBudget {pdb.label} ({pdb.current_healthy} healthy, "
                f"needs {pdb.desired_healthy})"
            )
    match = _PDB_MESSAGE.search(message)
    if match is not None:
        line = next(text for text in message.splitlines() if match[0] in text)
        pod = _LISTED_POD.search(line)
        name = f"{pod['namespace']}/{match['name']}" if pod else match["name"]
        return f"drain blocked by PodDisruptionBudget {name} ({match['has']} healthy, needs {match['needs']})"
    since = f" since {machine.drain_started.isoformat()}" if machine.drain_started else ""
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return f"draining node {machine.node_ref or '?'}{since}" + (f": {first}" if first else "")


def _blocking_pdb(
    node: str, pods: Sequence[Pod], pdbs: Sequence[PodDisruptionBudget]
) -> PodDisruptionBudget | None:
    evicted = [pod for pod in pods if pod.node == node and pod.evicted_by_drain]
    return next(
        (
            pdb
            for pdb in sorted(pdbs, key=lambda p: p.label)
            if pdb.disruptions_allowed <= 0 and any(pdb.selects(pod) for pod in evicted)
        ),
        None,
    )
