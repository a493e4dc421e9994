"""CloudStackMachines for the Machines of a workload cluster, cloned from their templates as CAPI does.

CAPI's MachineSet and KubeadmControlPlane controllers create each Machine's infrastructure machine by
cloning the owner's CloudStackMachineTemplate `spec.template` (with the cloned-from annotations and an
owner reference to the Machine); CAPC then fills in the VM: `spec.instanceID`, `spec.providerID`,
`status.instanceState`. Here the VM id is the one the Machine's Node carries (`workload_nodes.vm_id`), so
Machine, CloudStackMachine and Node agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tests.testenv.rollout_status import CLUSTER_NAME_LABEL
from tests.testenv.workload_nodes import Machine, vm_id

INFRA_GROUP, INFRA_VERSION = "infrastructure.cluster.x-k8s.io", "v1beta3"
CLONED_FROM_NAME = "cluster.x-k8s.io/cloned-from-name"
CLONED_FROM_GROUPKIND = "cluster.x-k8s.io/cloned-from-groupkind"
TEMPLATE_GROUPKIND = "CloudStackMachineTemplate.infrastructure.cluster.x-k8s.io"


def template_name(capi: str, owner: dict[str, Any]) -> str | None:
    """The CloudStackMachineTemplate a KubeadmControlPlane or MachineDeployment points at."""
    spec = owner.get("spec") or {}
    if owner["kind"] == "KubeadmControlPlane":
        template = spec.get("machineTemplate") or {}
        ref = (template.get("spec") or {}).get("infrastructureRef") or template.get("infrastructureRef") or {}
    else:
        ref = ((spec.get("template") or {}).get("spec") or {}).get("infrastructureRef") or {}
    name = ref.get("name")
    return str(name) if ref.get("kind") == "CloudStackMachineTemplate" and name else None


def cloudstack_machine(machine: Machine, template: dict[str, Any]) -> dict[str, Any]:
    """The CloudStackMachine cloned from `template` for `machine`, with the VM CAPC gives it."""
    meta = machine["metadata"]
    spec = dict(((template.get("spec") or {}).get("template") or {}).get("spec") or {})
    instance = vm_id(machine)
    spec.update({"instanceID": instance, "providerID": f"cloudstack:///{instance}"})
    return {
        "apiVersion": f"{INFRA_GROUP}/{INFRA_VERSION}",
        "kind": "CloudStackMachine",
        "metadata": {
            "name": machine["spec"]["infrastructureRef"]["name"],
            "namespace": meta["namespace"],
            "labels": {CLUSTER_NAME_LABEL: machine["spec"]["clusterName"]},
            "annotations": {
                CLONED_FROM_NAME: template["metadata"]["name"],
                CLONED_FROM_GROUPKIND: TEMPLATE_GROUPKIND,
            },
            "ownerReferences": [
                {
                    "apiVersion": machine["apiVersion"],
                    "kind": "Machine",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def running_status() -> dict[str, Any]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"ready": True, "instanceState": "Running", "instanceStateLastUpdated": now}


class InfraKeeper:
    """Creates the CloudStackMachine of each Machine that has none (once per Machine)."""

    def __init__(self, mgmt: Any, capi: str) -> None:
        self.mgmt, self.capi = mgmt, capi
        self._done: set[str] = set()  # Machine uids whose CloudStackMachine exists

    def ensure(self, machine: Machine) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        meta = machine["metadata"]
        ref = (machine.get("spec") or {}).get("infrastructureRef") or {}
        if (
            meta["uid"] in self._done
            or ref.get("kind") != "CloudStackMachine"
            or meta.get("deletionTimestamp")
        ):
            return
        custom = client.CustomObjectsApi(self.mgmt)
        template = self._template(custom, machine)
        if template is None:
            return
        body = cloudstack_machine(machine, template)
        try:
            custom.create_namespaced_custom_object(
                INFRA_GROUP, INFRA_VERSION, meta["namespace"], "cloudstackmachines", body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        custom.patch_namespaced_custom_object_status(
            INFRA_GROUP, INFRA_VERSION, meta["namespace"], "cloudstackmachines", body["metadata"]["name"],
            {"status": running_status()},
        )  # fmt: skip
        self._done.add(meta["uid"])

    def _template(self, custom: Any, machine: Machine) -> dict[str, Any] | None:
        labels = machine["metadata"].get("labels") or {}
        namespace = machine["metadata"]["namespace"]
        if owner_name := labels.get("cluster.x-k8s.io/control-plane-name"):
            owner = custom.get_namespaced_custom_object(
                "controlplane.cluster.x-k8s.io", self.capi, namespace, "kubeadmcontrolplanes", owner_name
            )
        elif owner_name := labels.get("cluster.x-k8s.io/deployment-name"):
            owner = custom.get_namespaced_custom_object(
                "cluster.x-k8s.io", self.capi, namespace, "machinedeployments", owner_name
            )
        else:
            return None
        name = template_name(self.capi, owner)
        if name is None:
            return None
        template: dict[str, Any] = custom.get_namespaced_custom_object(
            INFRA_GROUP, INFRA_VERSION, namespace, "cloudstackmachinetemplates", name
        )
        return template
