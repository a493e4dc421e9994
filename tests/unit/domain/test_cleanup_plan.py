"""Which CloudStackMachineTemplates cleanup deletes and why the others stay. No servers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubectl_capc.domain.cleanup import CLONED_FROM_NAME, plan_cleanup, template_references
from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.records import ACTION_UPGRADE
from tests.support.fixtures_capc import to_v1beta2
from tests.support.planner_scenes import cluster, inventory, named, of_kind
from tests.unit.domain.test_rollback_plan import record

CAPIS = ["v1beta1", "v1beta2"]
GROUP_KIND = "cluster.x-k8s.io/cloned-from-groupkind"


def template(objects: list[dict[str, Any]], name: str, **metadata: Any) -> dict[str, Any]:
    """A copy of c1-md-0's template under `name`, with extra metadata."""
    clone = copy.deepcopy(named(objects, "CloudStackMachineTemplate", "c1-md-0"))
    clone["metadata"].update(name=name, uid=f"uid-{name}", **metadata)
    objects.append(clone)
    return clone


def machine_set(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """A MachineSet of `deployment`'s current revision, as the MachineDeployment controller makes it."""
    return {
        "apiVersion": deployment["apiVersion"],
        "kind": "MachineSet",
        "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"]},
        "spec": {
            "clusterName": deployment["spec"]["clusterName"],
            "selector": deployment["spec"]["selector"],
            "template": copy.deepcopy(deployment["spec"]["template"]),
        },
    }


@pytest.mark.parametrize("capi", CAPIS)
def test_references_in_every_shape(capi: str) -> None:
    objects = cluster(capi)
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    md = named(objects, "MachineDeployment", "c1-md-1")
    machine: dict[str, Any] = {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Machine",
        "metadata": {
            "name": "m1",
            "annotations": {
                CLONED_FROM_NAME: "cp-old",
                GROUP_KIND: "CloudStackMachineTemplate.infrastructure.cluster.x-k8s.io",
            },
        },
        "spec": {
            "clusterName": "c1",
            "bootstrap": {"configRef": {"apiVersion": "b/v1beta1", "kind": "KubeadmConfig", "name": "m1"}},
            "infrastructureRef": {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
                "kind": "CloudStackMachine",
                "name": "m1",
            },
        },
    }
    if capi == "v1beta2":
        machine = to_v1beta2(machine)
    other_kind = {
        "metadata": {
            "name": "m2",
            "annotations": {
                CLONED_FROM_NAME: "d1",
                GROUP_KIND: "DockerMachineTemplate.infrastructure.cluster.x-k8s.io",
            },
        }
    }
    infra_machine = {"metadata": {"name": "csm-1", "annotations": {CLONED_FROM_NAME: "md-old"}}}
    referrers = {
        "KubeadmControlPlane": [kcp],
        "MachineDeployment": [md],
        "MachineSet": [machine_set(md, "c1-md-1-abc"), machine_set(md, "c1-md-1-def")],
        "Machine": [machine, other_kind],
        "CloudStackMachine": [infra_machine],
    }
    assert template_references(referrers) == {
        "c1-control-plane": ("KubeadmControlPlane/c1-control-plane",),
        "c1-md-1": ("MachineDeployment/c1-md-1", "MachineSet/c1-md-1-abc", "MachineSet/c1-md-1-def"),
        "cp-old": ("Machine/m1",),
        "md-old": ("CloudStackMachine/csm-1",),
    }


@pytest.mark.parametrize("capi", CAPIS)
def test_only_the_clusters_unused_templates_go(capi: str) -> None:
    objects = cluster(capi)
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    cluster_uid = named(objects, "Cluster", "c1")["metadata"]["uid"]
    md0 = named(objects, "MachineDeployment", "c1-md-0")
    template(objects, "c1-control-plane-new", labels={"cluster.x-k8s.io/cluster-name": "c1"})
    template(objects, "c1-md-0-new", labels={"cluster.x-k8s.io/cluster-name": "c1"})
    record(kcp, ACTION_UPGRADE, "v1.28.5", "c1-control-plane-new", "2026-03-01T10:00:00Z")
    record(md0, ACTION_UPGRADE, "v1.28.5", "c1-md-0-new", "2026-03-01T10:00:00Z")
    owner = {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "name": "c1", "uid": cluster_uid}
    template(objects, "owned", ownerReferences=[owner])
    template(objects, "owned-by-a-namesake", ownerReferences=[{**owner, "uid": "another"}])
    template(objects, "labelled", labels={"cluster.x-k8s.io/cluster-name": "c1"})
    template(objects, "other-cluster", labels={"cluster.x-k8s.io/cluster-name": "c2"})
    template(objects, "stray")
    template(
        objects,
        "going",
        labels={"cluster.x-k8s.io/cluster-name": "c1"},
        deletionTimestamp="2026-01-01T00:00:00Z",
    )

    inv = inventory(objects)
    references = template_references(
        {"KubeadmControlPlane": [kcp], "MachineDeployment": of_kind(objects, "MachineDeployment"),
         "Machine": [{"metadata": {"name": "m1", "annotations": {CLONED_FROM_NAME: "labelled"}}}]}
    )  # fmt: skip
    result = plan_cleanup(inv, references)
    assert [(t.name, t.belongs, t.note) for t in result.unused] == [
        ("c1-control-plane", "named in the history of KubeadmControlPlane/c1-control-plane",
         "previous template of KubeadmControlPlane/c1-control-plane: no rollback after deleting"),
        ("c1-md-0", "named in the history of MachineDeployment/c1-md-0",
         "previous template of MachineDeployment/c1-md-0: no rollback after deleting"),
        ("owned", "owned by Cluster/c1", ""),
    ]  # fmt: skip
    assert {t.name: t.used_by for t in result.in_use} == {
        "c1-control-plane-new": ("KubeadmControlPlane/c1-control-plane",),
        "c1-md-0-new": ("MachineDeployment/c1-md-0",),
        "labelled": ("Machine/m1",),
    }
    first = result.unused[0]
    assert (first.uid, first.image) == (
        named(objects, "CloudStackMachineTemplate", "c1-control-plane")["metadata"]["uid"],
        "ubuntu-2204-kube-v1.28.5",
    )
    document = result.to_document()
    assert document["kind"] == "MachineTemplateCleanup"
    assert [t["name"] for t in document["status"]["delete"]] == ["c1-control-plane", "c1-md-0", "owned"]


def test_topology_clusters_are_refused() -> None:
    objects = cluster("v1beta1")
    named(objects, "Cluster", "c1")["spec"]["topology"] = {"class": "cc", "version": "v1.28.5"}
    with pytest.raises(PlanError, match="topology-managed"):
        plan_cleanup(inventory(objects), {})
