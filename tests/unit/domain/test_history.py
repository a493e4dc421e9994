"""`kubectl_capc.domain.history` on recorded scenes: order, table and typed document. No servers."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.history import cluster_history
from kubectl_capc.domain.records import ACTION_ROLLBACK, ACTION_UPGRADE, HISTORY
from tests.support.planner_scenes import cluster, inventory, named
from tests.unit.domain.test_rollback_plan import record

CAPIS = ["v1beta1", "v1beta2"]


@pytest.mark.parametrize("capi", CAPIS)
def test_rotations_of_all_objects_newest_first(capi: str) -> None:
    objects = cluster(capi)
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    md0 = named(objects, "MachineDeployment", "c1-md-0")
    md1 = named(objects, "MachineDeployment", "c1-md-1")
    record(kcp, ACTION_UPGRADE, "v1.28.9", "c1-control-plane-v1-28-9", "2026-03-01T09:00:00Z")
    record(kcp, ACTION_UPGRADE, "v1.29.3", "c1-control-plane-v1-29-3", "2026-03-01T10:05:00.100000Z")
    record(md1, ACTION_UPGRADE, "v1.29.3", "c1-md-1-v1-29-3", "2026-03-01T10:05:00.300000Z")
    record(md0, ACTION_UPGRADE, "v1.29.3", "c1-md-0-v1-29-3", "2026-03-01T10:05:00.200000Z")
    record(md0, ACTION_ROLLBACK, "v1.28.5", "c1-md-0", "2026-03-01T11:00:00.000000Z")

    recorded = cluster_history(inventory(objects))
    # Within one second by the fraction; older records written to the second still sort by time.
    assert [(e.rotation.at, e.rotation.action, e.subject) for e in recorded.entries] == [
        ("2026-03-01T11:00:00.000000Z", ACTION_ROLLBACK, "MachineDeployment/c1-md-0"),
        ("2026-03-01T10:05:00.300000Z", ACTION_UPGRADE, "MachineDeployment/c1-md-1"),
        ("2026-03-01T10:05:00.200000Z", ACTION_UPGRADE, "MachineDeployment/c1-md-0"),
        ("2026-03-01T10:05:00.100000Z", ACTION_UPGRADE, "KubeadmControlPlane/c1-control-plane"),
        ("2026-03-01T09:00:00Z", ACTION_UPGRADE, "KubeadmControlPlane/c1-control-plane"),
    ]
    assert recorded.table_rows()[0] == (
        "2026-03-01T11:00:00Z",
        "rollback",
        "MachineDeployment/c1-md-0",
        "v1.29.3 → v1.28.5",
        "c1-md-0-v1-29-3 → c1-md-0",
        "-",
    )
    document = recorded.to_document()
    assert (document["kind"], document["metadata"]) == ("UpgradeHistory", {"name": "c1", "namespace": "ns"})
    assert document["rotations"][-1] == {
        "at": "2026-03-01T09:00:00Z",
        "action": "upgrade",
        "kind": "KubeadmControlPlane",
        "name": "c1-control-plane",
        "version": {"from": "v1.28.5", "to": "v1.28.9"},
        "machineTemplate": {"from": "c1-control-plane", "to": "c1-control-plane-v1-28-9"},
        "image": {"from": "", "to": ""},
    }


def test_unreadable_records_are_skipped_and_an_untouched_cluster_has_none() -> None:
    objects = cluster()
    assert cluster_history(inventory(objects)).entries == ()
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    kcp["metadata"].setdefault("annotations", {})[HISTORY] = '[{"at": "x"}, "junk", {"no": 1}]'
    named(objects, "MachineDeployment", "c1-md-0")["metadata"].setdefault("annotations", {})[HISTORY] = (
        "{not json"
    )
    assert cluster_history(inventory(objects)).to_document()["rotations"] == []
