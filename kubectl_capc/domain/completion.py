"""When an upgrade may say a cluster is at its target: not while any of its Machines runs an older version.

The plan is made from the KubeadmControlPlane and the MachineDeployments found for the cluster; a Machine
of the cluster (by `spec.clusterName`) that none of them accounts for, or that they left behind, would
otherwise be hidden behind "cluster ... is at v1.29.3". Machines being deleted are on their way out and
do not count. Only versions are compared: a Machine no owner accounts for has no template it should be
built from (an owner's old Machines, by version or template, are `ClusterInventory.machines_behind`).
"""

from __future__ import annotations

from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.model import ClusterInventory, Machine, MachineRole
from kubectl_capc.domain.versions import KubeVersion, parse_version

__all__ = ["machines_older_than", "require_at_target"]

_SHOWN = 5


def machines_older_than(inventory: ClusterInventory, target: KubeVersion) -> tuple[Machine, ...]:
    """The cluster's Machines, not being deleted, whose `spec.version` is older than `target`."""
    behind = []
    for machine in inventory.machines:
        if machine.deleting or not machine.version:
            continue
        try:
            version = parse_version(machine.version)
        except ValueError:
            continue
        if version < target:
            behind.append(machine)
    return tuple(behind)


def _owner(inventory: ClusterInventory, machine: Machine) -> str:
    if machine.role is MachineRole.CONTROL_PLANE:
        control_plane = inventory.control_plane
        if control_plane is not None and machine.owner in ("", control_plane.name):
            return f"KubeadmControlPlane/{control_plane.name}"
        return f"control plane {machine.owner or '?'}, not the cluster's"
    if not machine.owner:
        return "no MachineDeployment"
    if any(md.name == machine.owner for md in inventory.machine_deployments):
        return f"MachineDeployment/{machine.owner}"
    return f"MachineDeployment {machine.owner}, not found for the cluster"


def require_at_target(inventory: ClusterInventory, target: KubeVersion) -> None:
    """Raise `PlanError` naming the Machines (and their owners) still older than `target`."""
    behind = machines_older_than(inventory, target)
    if not behind:
        return
    shown = [f"{m.name} ({m.version}, {_owner(inventory, m)})" for m in behind[:_SHOWN]]
    more = f" and {len(behind) - _SHOWN} more" if len(behind) > _SHOWN else ""
    which = "Machine {} still runs" if len(behind) == 1 else "Machines {} still run"
    raise PlanError(
        f"cluster {inventory.namespace}/{inventory.name} is not at {target}: "
        + which.format(", ".join(shown) + more)
        + " an older version",
        hint="upgrade or delete what owns them (a MachineDeployment with the OnDelete strategy replaces a "
        "Machine only once it is deleted); "
        f"`kubectl capc describe {inventory.name} -n {inventory.namespace}` shows the cluster",
    )
