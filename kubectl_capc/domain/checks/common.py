"""Helpers the check families share: subjects of findings and the objects that use a machine template."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubectl_capc.domain.checks.base import ObjectRef
from kubectl_capc.domain.model import (
    CLOUDSTACK_CLUSTER_KIND,
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    ClusterInventory,
    MachineTemplate,
)

__all__ = ["TemplateUser", "cloudstack_cluster_ref", "cluster_ref", "template_ref", "template_users"]


def cluster_ref(inventory: ClusterInventory) -> ObjectRef:
    return ObjectRef("Cluster", inventory.namespace, inventory.name)


def cloudstack_cluster_ref(inventory: ClusterInventory) -> ObjectRef:
    infrastructure = inventory.infrastructure
    name = infrastructure.name if infrastructure is not None else inventory.name
    return ObjectRef(CLOUDSTACK_CLUSTER_KIND, inventory.namespace, name)


def template_ref(template: MachineTemplate) -> ObjectRef:
    return ObjectRef(CLOUDSTACK_MACHINE_TEMPLATE_KIND, template.namespace, template.name)


@dataclass(frozen=True)
class TemplateUser:
    """An object that creates machines from a CloudStackMachineTemplate, and the version it runs."""

    subject: ObjectRef
    version: str
    template: MachineTemplate


def template_users(inventory: ClusterInventory) -> Iterator[TemplateUser]:
    """The control plane, then each MachineDeployment, for those whose machine template was found."""
    control_plane = inventory.control_plane
    if control_plane is not None and control_plane.machine_template is not None:
        yield TemplateUser(
            ObjectRef(control_plane.kind, control_plane.namespace, control_plane.name),
            control_plane.version,
            control_plane.machine_template,
        )
    for deployment in inventory.machine_deployments:
        if deployment.machine_template is not None:
            yield TemplateUser(
                ObjectRef("MachineDeployment", deployment.namespace, deployment.name),
                deployment.version,
                deployment.machine_template,
            )
