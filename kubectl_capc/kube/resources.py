"""Where each kind the plugin reads or writes is served: one table for every kube module."""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_capc.domain.model import (
    BOOTSTRAP_GROUP,
    CLUSTER_GROUP,
    CONTROL_PLANE_GROUP,
    INFRASTRUCTURE_GROUP,
)

__all__ = ["CAPC_VERSION", "RESOURCES", "Resource"]

CAPC_VERSION = "v1beta3"
"""The CAPC API version the plugin reads and writes."""


@dataclass(frozen=True)
class Resource:
    """A kind's API group and the plural its REST paths use."""

    group: str
    plural: str


RESOURCES: dict[str, Resource] = {
    "Cluster": Resource(CLUSTER_GROUP, "clusters"),
    "MachineDeployment": Resource(CLUSTER_GROUP, "machinedeployments"),
    "MachineSet": Resource(CLUSTER_GROUP, "machinesets"),
    "Machine": Resource(CLUSTER_GROUP, "machines"),
    "MachineHealthCheck": Resource(CLUSTER_GROUP, "machinehealthchecks"),
    "KubeadmControlPlane": Resource(CONTROL_PLANE_GROUP, "kubeadmcontrolplanes"),
    "KubeadmConfigTemplate": Resource(BOOTSTRAP_GROUP, "kubeadmconfigtemplates"),
    "CloudStackCluster": Resource(INFRASTRUCTURE_GROUP, "cloudstackclusters"),
    "CloudStackMachineTemplate": Resource(INFRASTRUCTURE_GROUP, "cloudstackmachinetemplates"),
    "CloudStackMachine": Resource(INFRASTRUCTURE_GROUP, "cloudstackmachines"),
}
