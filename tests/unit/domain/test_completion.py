"""A cluster is at its target only when none of its Machines runs an older version."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubectl_capc.domain.completion import machines_older_than, require_at_target
from kubectl_capc.domain.errors import ExitCode, PlanError
from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.domain.versions import parse_version
from tests.support.fixtures_capc import raw_objects, render_cluster, with_settled_status

TARGET = parse_version("v1.29.3")


def inventory(objects: list[dict[str, Any]]) -> ClusterInventory:
    (found,) = build_inventories(raw_objects(with_settled_status(objects)), "v1beta1")
    return found


def upgraded(md_count: int = 1) -> list[dict[str, Any]]:
    return render_cluster("c1", version="v1.29.3", md_count=md_count, with_machines=True)


def machine(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Machine" and o["metadata"]["name"] == name)


def test_a_cluster_whose_machines_all_run_the_target_is_at_it() -> None:
    found = inventory(upgraded())
    assert machines_older_than(found, TARGET) == ()
    require_at_target(found, TARGET)


def test_a_machine_of_a_deployment_not_found_for_the_cluster_keeps_it_from_being_done() -> None:
    objects = upgraded()
    stray = copy.deepcopy(machine(objects, "c1-md-0-0"))
    stray["metadata"]["name"] = "c1-md-9-0"
    stray["metadata"]["labels"]["cluster.x-k8s.io/deployment-name"] = "c1-md-9"
    stray["spec"]["version"] = "v1.28.5"
    found = inventory([*objects, stray])

    assert [m.name for m in machines_older_than(found, TARGET)] == ["c1-md-9-0"]
    with pytest.raises(PlanError) as caught:
        require_at_target(found, TARGET)
    assert caught.value.exit_code is ExitCode.PLAN
    assert str(caught.value).startswith(
        "cluster default/c1 is not at v1.29.3: Machine c1-md-9-0 (v1.28.5, MachineDeployment c1-md-9, "
        "not found for the cluster) still runs an older version; upgrade or delete what owns them"
    )


def test_a_machine_left_behind_by_a_found_owner_is_named_with_it() -> None:
    objects = upgraded(md_count=2)
    for name in ("c1-md-1-0", "c1-md-1-1", "c1-control-plane-2"):
        machine(objects, name)["spec"]["version"] = "v1.28.5"
    with pytest.raises(PlanError) as caught:
        require_at_target(inventory(objects), TARGET)
    assert (
        "Machines c1-control-plane-2 (v1.28.5, KubeadmControlPlane/c1-control-plane), "
        "c1-md-1-0 (v1.28.5, MachineDeployment/c1-md-1), c1-md-1-1 (v1.28.5, MachineDeployment/c1-md-1) "
        "still run an older version"
    ) in caught.value.message


def test_machines_being_deleted_newer_or_without_a_version_do_not_count() -> None:
    objects = upgraded()
    machine(objects, "c1-md-0-0")["spec"]["version"] = "v1.28.5"
    machine(objects, "c1-md-0-0")["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    machine(objects, "c1-md-0-1")["spec"]["version"] = "v1.30.0"
    del machine(objects, "c1-control-plane-0")["spec"]["version"]
    assert machines_older_than(inventory(objects), TARGET) == ()


def test_a_machine_of_another_cluster_does_not_count() -> None:
    objects = upgraded()
    other = copy.deepcopy(machine(objects, "c1-md-0-0"))
    other["metadata"].update(name="c2-md-0-0", labels={"cluster.x-k8s.io/cluster-name": "c2"})
    other["spec"].update(clusterName="c2", version="v1.27.1")
    assert machines_older_than(inventory([*objects, other]), TARGET) == ()


def test_more_than_five_are_counted_not_listed() -> None:
    objects = render_cluster("c1", version="v1.29.3", worker_replicas=8, with_machines=True)
    for obj in objects:
        if obj["kind"] == "Machine" and obj["metadata"]["name"].startswith("c1-md-0-"):
            obj["spec"]["version"] = "v1.28.5"
    with pytest.raises(PlanError) as caught:
        require_at_target(inventory(objects), TARGET)
    assert " and 3 more still run an older version" in caught.value.message
