"""Checks that the caller may do what an upgrade does, asked with SelfSubjectAccessReviews.

An upgrade reads each failure domain's credentials Secret, creates CloudStackMachineTemplates, and
reads (`get`, before each dry run), patches and then watches the KubeadmControlPlane and the
MachineDeployments. A missing `watch` would otherwise only show once the first object is patched.
It also holds the cluster's upgrade lock, a Lease in its namespace: read, created, updated (renewed,
or taken over) and deleted at the end.
"""

from __future__ import annotations

from kubectl_capc.domain.checks.base import Check, Finding, Severity
from kubectl_capc.domain.checks.common import cluster_ref
from kubectl_capc.domain.checks.facts import Access, Facts
from kubectl_capc.domain.model import (
    CLUSTER_GROUP,
    CONTROL_PLANE_GROUP,
    INFRASTRUCTURE_GROUP,
    ClusterInventory,
)

__all__ = [
    "COORDINATION_GROUP",
    "PERMISSION_MISSING",
    "check_permissions",
    "replace_access",
    "required_access",
]

PERMISSION_MISSING = Check(
    "CAPC-P001",
    Severity.ERROR,
    "Missing permission for the upgrade",
    "ask for a Role granting the verb on that resource, or run as a user who has it",
)

# On the KubeadmControlPlane and each MachineDeployment, in the order an upgrade uses them.
_OWNER_VERBS = ("get", "patch", "watch")
COORDINATION_GROUP = "coordination.k8s.io"
# On the upgrade lock (kubectl_capc.domain.lease), in the order a run uses them.
_LEASE_VERBS = ("get", "create", "update", "delete")


def required_access(inventory: ClusterInventory) -> tuple[Access, ...]:
    """The permissions an upgrade of this cluster uses, each once, in a stable order."""
    namespace = inventory.namespace
    needed = [
        Access("get", "", "secrets", fd.credentials.namespace, fd.credentials.name)
        for fd in inventory.failure_domains
        if fd.credentials.name
    ]
    needed.append(Access("create", INFRASTRUCTURE_GROUP, "cloudstackmachinetemplates", namespace))
    if inventory.control_plane is not None:
        needed += [
            Access(verb, CONTROL_PLANE_GROUP, "kubeadmcontrolplanes", namespace) for verb in _OWNER_VERBS
        ]
    if inventory.machine_deployments:
        needed += [Access(verb, CLUSTER_GROUP, "machinedeployments", namespace) for verb in _OWNER_VERBS]
    needed += [Access(verb, COORDINATION_GROUP, "leases", namespace) for verb in _LEASE_VERBS]
    return tuple(dict.fromkeys(needed))


def replace_access(namespace: str) -> tuple[Access, ...]:
    """What `image-upgrade --on-delete=replace` needs beyond an upgrade: deleting the old Machines of
    OnDelete MachineDeployments and watching their replacements (the documented Role grants `watch`)."""
    return tuple(Access(verb, CLUSTER_GROUP, "machines", namespace) for verb in ("delete", "watch"))


def check_permissions(inventory: ClusterInventory, facts: Facts) -> list[Finding]:
    return [
        PERMISSION_MISSING.finding(cluster_ref(inventory), f"you cannot {access}")
        for access in required_access(inventory)
        if facts.access.get(access) is False
    ]
