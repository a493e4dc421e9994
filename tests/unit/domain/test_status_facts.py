"""The doctor's inputs from raw objects: Machines in both CAPI shapes, CloudStackMachines against what
CloudStack lists, MachineHealthChecks, and objects of other clusters left out."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kubectl_capc.domain.diagnosis import TemplateReadiness
from kubectl_capc.domain.status_facts import (
    VirtualMachineState,
    ZoneFacts,
    cluster_status,
    parse_health_check,
    parse_infra_machine,
    parse_machine,
)
from tests.support.checks_support import inventory_of
from tests.support.fixtures_capc import Zone, render_cluster

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
ZONES = (Zone("zone-a", "net-a"),)


def _objects(capi: str = "v1beta2") -> list[dict[str, Any]]:
    return render_cluster(
        "c1", "prod", capi=capi, control_plane_replicas=1, worker_replicas=1, zones=ZONES, with_machines=True
    )


def _machines(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "Machine"]


def _csm(name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachine",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {
            "failureDomainName": "fd-zone-a",
            "template": {"name": "ubuntu-v1.28.5"},
            "instanceID": "vm-1",
        },
        "status": {"ready": True, "instanceState": "Running", **status},
    }


def test_machine_in_the_v1beta2_shape_carries_both_condition_flavours_and_its_timers() -> None:
    raw = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {
            "name": "m1", "namespace": "prod", "creationTimestamp": "2026-12-06T11:00:00Z",
            "deletionTimestamp": "2026-12-06T11:50:00Z",
            "labels": {"cluster.x-k8s.io/deployment-name": "md-0"},
        },
        "spec": {"version": "v1.28.5", "deletion": {"nodeDrainTimeoutSeconds": 300}},
        "status": {
            "phase": "Deleting", "nodeRef": {"name": "n1"},
            "conditions": [{"type": "Deleting", "status": "True", "reason": "DrainingNode", "message": "x"}],
            "deprecated": {"v1beta1": {"conditions": [{"type": "DrainingSucceeded", "status": "False"}]}},
            "deletion": {"nodeDrainStartTime": "2026-12-06T11:51:00Z"},
        },
    }  # fmt: skip
    machine = parse_machine(raw)
    assert (machine.owner_kind, machine.owner_name, machine.node_ref) == ("MachineDeployment", "md-0", "n1")
    assert [c.type for c in machine.conditions] == ["Deleting", "DrainingSucceeded"]
    assert machine.deleting_since == datetime(2026, 12, 6, 11, 50, tzinfo=timezone.utc)
    assert machine.drain_started == datetime(2026, 12, 6, 11, 51, tzinfo=timezone.utc)
    assert machine.drain_timeout_seconds == 300.0


def test_machine_in_the_v1beta1_shape_reads_the_v1beta2_conditions_and_the_duration() -> None:
    raw = {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "metadata": {"name": "m1", "namespace": "prod", "labels": {"cluster.x-k8s.io/control-plane": ""}},
        "spec": {"nodeDrainTimeout": "1m30s"},
        "status": {"v1beta2": {"conditions": [{"type": "Deleting", "status": "True"}]}},
    }
    machine = parse_machine(raw)
    assert machine.owner_kind == "KubeadmControlPlane"
    assert [c.type for c in machine.conditions] == ["Deleting"]
    assert machine.drain_timeout_seconds == 90.0


CHECKED = ZoneFacts(checked=frozenset({"zone-a"}))


@pytest.mark.parametrize(
    ("status", "vms", "expected"),
    [
        ({}, [VirtualMachineState("vm-1", "m", "Error", "zone-a")], ("Error", "")),
        ({}, [VirtualMachineState("vm-1", "m", "Stopped", "zone-a")], ("Stopped", "")),
        ({}, [], ("Running", "VM vm-1 is not listed in zone zone-a any more")),
        ({"status": "Failure", "reason": "no VM by that name"}, [], ("Running", "no VM by that name")),
    ],
)
def test_cloudstack_knows_the_vm_state_better_than_the_cloudstack_machine(
    status: dict[str, str], vms: list[VirtualMachineState], expected: tuple[str, str]
) -> None:
    infra = parse_infra_machine(
        _csm("m", **status), {"fd-zone-a": "zone-a"}, ZoneFacts(CHECKED.checked, tuple(vms))
    )
    assert (infra.instance_state, infra.failure_message) == expected
    assert (infra.template, infra.zone) == ("ubuntu-v1.28.5", "zone-a")


def test_a_zone_not_asked_leaves_the_cloudstack_machine_as_it_is() -> None:
    infra = parse_infra_machine(_csm("m"), {"fd-zone-a": "zone-a"}, ZoneFacts())
    assert (infra.instance_state, infra.failure_message) == ("Running", "")


def test_a_vm_without_instance_id_is_found_by_name() -> None:
    csm = _csm("m")
    del csm["spec"]["instanceID"]
    facts = ZoneFacts(CHECKED.checked, (VirtualMachineState("vm-9", "m", "Error", "zone-a"),))
    assert parse_infra_machine(csm, {"fd-zone-a": "zone-a"}, facts).instance_state == "Error"


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_cluster_status_joins_machines_their_vms_and_template_readiness(capi: str) -> None:
    objects = _objects(capi)
    inventory = inventory_of(objects, capi)
    machines = _machines(objects)
    worker = next(m for m in machines if "cluster.x-k8s.io/deployment-name" in m["metadata"]["labels"])
    worker["metadata"]["creationTimestamp"] = "2026-12-06T11:00:00Z"
    template = inventory.machine_deployments[0].machine_template
    assert template is not None
    csm = _csm(worker["metadata"]["name"])
    csm["spec"]["template"] = {"name": template.cloudstack_template.name}
    other = copy.deepcopy(worker)
    other["metadata"]["name"] = "elsewhere"
    other["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] = "c2"
    other["spec"]["clusterName"] = "c2"
    zones = ZoneFacts(
        CHECKED.checked,
        (VirtualMachineState("vm-1", worker["metadata"]["name"], "Running", "zone-a"),),
        {(template.cloudstack_template.name, "zone-a"): TemplateReadiness(False, "12% Downloaded")},
    )

    status = cluster_status(inventory, [*machines, other], [csm], [], zones=zones, workload=None, now=NOW)

    assert [(o.kind, len(o.machines)) for o in status.owners] == [
        ("KubeadmControlPlane", 1),
        ("MachineDeployment", 1),
    ]
    (blocked,) = status.owners[1].blocked
    assert blocked.cause == (
        f"template {template.cloudstack_template.name} not ready in zone zone-a (12% Downloaded)"
    )


def test_a_remediated_machine_is_named_with_its_machine_health_check() -> None:
    objects = _objects()
    inventory = inventory_of(objects)
    machines = _machines(objects)
    worker = next(m for m in machines if "cluster.x-k8s.io/deployment-name" in m["metadata"]["labels"])
    worker["status"] = {
        "nodeRef": {"name": "n"},
        "conditions": [{"type": "OwnerRemediated", "status": "False", "reason": "WaitingForRemediation"}],
    }
    mhc = parse_health_check(
        {
            "metadata": {"namespace": "prod", "name": "workers"},
            "spec": {
                "clusterName": "c1",
                "selector": {
                    "matchExpressions": [{"key": "cluster.x-k8s.io/deployment-name", "operator": "Exists"}]
                },
            },
        }
    )
    assert mhc is not None
    other_cluster = parse_health_check(
        {"metadata": {"namespace": "prod", "name": "c2"}, "spec": {"clusterName": "c2", "selector": {}}}
    )
    assert other_cluster is not None

    status = cluster_status(
        inventory, machines, [], [other_cluster, mhc], zones=ZoneFacts(), workload=None, now=NOW
    )

    (blocked,) = status.owners[1].blocked
    assert blocked.cause == "MachineHealthCheck prod/workers remediation in progress"
    assert status.owners[0].blocked == ()


def test_join_timeout_is_the_callers() -> None:
    objects = _objects()
    inventory = inventory_of(objects)
    machines = _machines(objects)
    for machine in machines:
        machine["metadata"]["creationTimestamp"] = (NOW - timedelta(minutes=4)).isoformat()
    status = cluster_status(
        inventory,
        machines,
        [],
        [],
        zones=ZoneFacts(),
        workload=None,
        now=NOW,
        join_timeout=timedelta(minutes=3),
    )
    causes = [m.cause for owner in status.owners for m in owner.machines]
    assert causes == ["node never joined (no nodeRef after 4 minutes)"] * 2
