"""Checks on the Cluster API objects alone: management mode, pause, rollouts and version skew."""

from __future__ import annotations

from kubectl_capc.domain.checks.base import Check, Finding, ObjectRef, Severity
from kubectl_capc.domain.checks.common import cluster_ref
from kubectl_capc.domain.model import ClusterInventory, Machine, MachineRole, Replicas, normalize_version
from kubectl_capc.domain.versions import kubelet_max_lag, version_or_none

__all__ = [
    "INCOMPLETE",
    "PAUSED",
    "ROLLOUT_IN_PROGRESS",
    "TOPOLOGY_MANAGED",
    "WORKERS_NEWER",
    "WORKERS_OTHER_MINOR",
    "WORKERS_TOO_OLD",
    "check_cluster",
]

TOPOLOGY_MANAGED = Check(
    "CAPC-C001",
    Severity.ERROR,
    "Cluster is topology-managed (ClusterClass)",
    "upgrade it by changing Cluster.spec.topology.version; its control plane and MachineDeployments "
    "are owned by the topology controller",
)
PAUSED = Check(
    "CAPC-C002",
    Severity.WARNING,
    "Object is paused",
    "an upgrade of a paused object waits forever; remove the cluster.x-k8s.io/paused annotation or "
    "set spec.paused to false when maintenance is over",
)
ROLLOUT_IN_PROGRESS = Check(
    "CAPC-C003",
    Severity.ERROR,
    "A rollout is already in progress",
    "wait until every machine runs its owner's spec version (kubectl capc describe shows progress)",
)
WORKERS_NEWER = Check(
    "CAPC-C004",
    Severity.ERROR,
    "MachineDeployment is newer than the control plane",
    "a kubelet must not be newer than the API server: upgrade the control plane first",
)
WORKERS_TOO_OLD = Check(
    "CAPC-C005",
    Severity.ERROR,
    "MachineDeployment trails the control plane by more than the kubelet skew allows",
    "upgrade the MachineDeployment towards the control plane's minor before anything else",
)
WORKERS_OTHER_MINOR = Check(
    "CAPC-C006",
    Severity.WARNING,
    "MachineDeployment runs another minor than the control plane",
    "kubeadm joins new machines only at the control plane's minor, so this MachineDeployment cannot "
    "scale up or remediate; upgrade it to the control plane's version",
)
INCOMPLETE = Check(
    "CAPC-C007",
    Severity.ERROR,
    "Cluster objects are incomplete",
    "create the missing object or fix the reference; kubectl capc describe lists what was found",
)


def check_cluster(inventory: ClusterInventory) -> list[Finding]:
    findings = [
        *_topology(inventory),
        *_incomplete(inventory),
        *_paused(inventory),
        *_rollouts(inventory),
        *_skew(inventory),
    ]
    return findings


def _topology(inventory: ClusterInventory) -> list[Finding]:
    topology = inventory.cluster.topology
    if topology is None:
        return []
    return [
        TOPOLOGY_MANAGED.finding(
            cluster_ref(inventory),
            f"managed through ClusterClass {topology.class_namespace}/{topology.class_name} at "
            f"{topology.version or 'an unset version'}; kubectl capc upgrades classic clusters only",
        )
    ]


def _incomplete(inventory: ClusterInventory) -> list[Finding]:
    return [INCOMPLETE.finding(cluster_ref(inventory), str(problem)) for problem in inventory.problems]


def _paused(inventory: ClusterInventory) -> list[Finding]:
    paused: list[ObjectRef] = []
    if inventory.cluster.paused:
        paused.append(cluster_ref(inventory))
    control_plane = inventory.control_plane
    if control_plane is not None and control_plane.paused:
        paused.append(ObjectRef(control_plane.kind, control_plane.namespace, control_plane.name))
    paused.extend(
        ObjectRef("MachineDeployment", md.namespace, md.name)
        for md in inventory.machine_deployments
        if md.paused
    )
    return [PAUSED.finding(subject, "paused: its controller makes no changes") for subject in paused]


def _rollouts(inventory: ClusterInventory) -> list[Finding]:
    off_spec = inventory.machines_off_spec()
    findings = []
    control_plane = inventory.control_plane
    if control_plane is not None:
        findings += _rollout(
            ObjectRef(control_plane.kind, control_plane.namespace, control_plane.name),
            control_plane.version,
            control_plane.replicas,
            control_plane.rollout_in_progress(),
            [m for m in off_spec if m.role is MachineRole.CONTROL_PLANE and m.owner == control_plane.name],
        )
    for md in inventory.machine_deployments:
        findings += _rollout(
            ObjectRef("MachineDeployment", md.namespace, md.name),
            md.version,
            md.replicas,
            md.rollout_in_progress(),
            [m for m in off_spec if m.role is MachineRole.WORKER and m.owner == md.name],
        )
    return findings


def _rollout(
    subject: ObjectRef, version: str, replicas: Replicas, in_progress: bool, stragglers: list[Machine]
) -> list[Finding]:
    """A finding when the owner reports a rollout or some of its machines run another version."""
    parts = []
    if in_progress:
        wanted = "?" if replicas.desired is None else str(replicas.desired)
        parts.append(f"rolling out {version}: {replicas.up_to_date} of {wanted} machines up to date")
    if stragglers:
        shown = ", ".join(f"{m.name} ({m.version or 'no version'})" for m in stragglers[:3])
        more = f" and {len(stragglers) - 3} more" if len(stragglers) > 3 else ""
        parts.append(f"machines not at {normalize_version(version)}: {shown}{more}")
    return [ROLLOUT_IN_PROGRESS.finding(subject, "; ".join(parts))] if parts else []


def _skew(inventory: ClusterInventory) -> list[Finding]:
    control_plane = inventory.control_plane
    if control_plane is None:
        return []
    cp = version_or_none(control_plane.version)
    if cp is None:
        return []
    findings = []
    for md in inventory.machine_deployments:
        worker = version_or_none(md.version)
        if worker is None or worker.major != cp.major:
            continue
        subject = ObjectRef("MachineDeployment", md.namespace, md.name)
        lag = cp.minor - worker.minor
        if lag < 0:
            findings.append(
                WORKERS_NEWER.finding(subject, f"runs {worker}, newer than the control plane's {cp}")
            )
        elif lag > kubelet_max_lag(cp.minor):
            findings.append(
                WORKERS_TOO_OLD.finding(
                    subject,
                    f"runs {worker}, {lag} minors behind the control plane's {cp}; the kubelet may trail "
                    f"the API server by at most {kubelet_max_lag(cp.minor)}",
                )
            )
        elif lag > 0:
            findings.append(
                WORKERS_OTHER_MINOR.finding(
                    subject, f"runs {worker} while the control plane runs {cp}: new machines are blocked"
                )
            )
    return findings
