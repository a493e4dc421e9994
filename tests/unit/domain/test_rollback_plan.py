"""The rollback decision on concrete scenes made by the real upgrade planner. No servers."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_capc.domain.errors import PlanError
from kubectl_capc.domain.plan import PatchObject, RollOnDelete, WaitRollout
from kubectl_capc.domain.records import (
    ACTION_ROLLBACK,
    ACTION_UPGRADE,
    Rotation,
    read_history,
    rotation_annotations,
)
from kubectl_capc.domain.rollback import GoBack, RollbackPlan, plan_rollback
from tests.support.ondelete_scene import scene
from tests.support.planner_scenes import (
    cluster,
    execute,
    first_segment,
    images,
    inventory,
    listing,
    named,
    of_kind,
    plan,
    set_version_and_template,
    settle,
)

CAPIS = ["v1beta1", "v1beta2"]
CP = "KubeadmControlPlane/c1-control-plane"
MD0, MD1 = "MachineDeployment/c1-md-0", "MachineDeployment/c1-md-1"
LISTING = listing(images("v1.28.5", "v1.28.9", "v1.29.3"))


def record(obj: dict[str, Any], action: str, version: str, template: str, at: str) -> None:
    """Change `obj` as image-upgrade or rollback does: version, template and history in one patch."""
    before_version, before_template = _version_and_template(obj)
    rotation = Rotation(at, action, before_version, version, before_template, template)
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations.update(rotation_annotations(rotation, annotations))
    set_version_and_template(obj, version, template)


def _version_and_template(obj: dict[str, Any]) -> tuple[str, str]:
    if obj["kind"] == "KubeadmControlPlane":
        machine_template = obj["spec"]["machineTemplate"]
        return obj["spec"]["version"], (machine_template.get("spec") or machine_template)[
            "infrastructureRef"
        ]["name"]
    spec = obj["spec"]["template"]["spec"]
    return spec["version"], spec["infrastructureRef"]["name"]


def upgrade(objects: list[dict[str, Any]], to: str, *, stop_before_wait_of: str | None = None) -> None:
    """Run the real upgrade plan to the end (or until the wait for `stop_before_wait_of`), recording
    every patch the way image-upgrade does."""
    clock = iter(range(10, 60))
    for _ in range(20):
        current = plan(objects, to, LISTING)
        if current.done:
            return
        for step in first_segment(current):
            if isinstance(step, WaitRollout) and f"{step.kind}/{step.names[0]}" == stop_before_wait_of:
                return
            if isinstance(step, RollOnDelete):
                continue  # --on-delete=leave: the Machines stay as they are
            if isinstance(step, PatchObject):
                obj = named(objects, step.kind, step.name)
                record(
                    obj, ACTION_UPGRADE, step.version_to, step.template_to, f"2026-03-01T10:00:{next(clock)}Z"
                )
            else:
                execute(objects, step)
    raise AssertionError("the upgrade does not converge")


def roll_back(objects: list[dict[str, Any]]) -> RollbackPlan:
    """Run rollback plans to the end, as the command's loop does; returns the first plan."""
    first = None
    for _ in range(20):
        current = plan_rollback(inventory(objects))
        first = first or current
        if current.done:
            return first
        for step in current.steps:
            obj = named(objects, step.kind, step.name if isinstance(step, GoBack) else step.names[0])
            if isinstance(step, GoBack):
                record(obj, ACTION_ROLLBACK, step.version_to, step.template_to, "2026-03-02T09:00:00Z")
            else:
                settle(obj)
                break
    raise AssertionError("the rollback does not converge")


def moves(result: RollbackPlan) -> list[tuple[str, str, str, str]]:
    return [(s.action, s.subject, s.version_to, s.template_to) for s in result.steps if isinstance(s, GoBack)]


def refused(result: RollbackPlan) -> dict[str, str]:
    return {r.subject: r.reason for r in result.refusals}


def stall_control_plane(objects: list[dict[str, Any]], running: list[tuple[str, int]]) -> None:
    """Report the control plane mid-rollout: `running` is (version, machines) as its status lists them."""
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    status = kcp["status"]
    status["version"] = min(v for v, _ in running)
    if kcp["apiVersion"].endswith("v1beta2"):
        status["versions"] = [{"version": v, "replicas": n} for v, n in running]


@pytest.mark.parametrize("capi", CAPIS)
def test_same_minor_upgrade_goes_back_everywhere_workers_first(capi: str) -> None:
    objects = cluster(capi)
    upgrade(objects, "v1.28.9")
    result = plan_rollback(inventory(objects))
    assert result.refusals == ()
    assert moves(result) == [
        ("RollBack", MD0, "v1.28.5", "c1-md-0"),
        ("RollBack", MD1, "v1.28.5", "c1-md-1"),
        ("RollBack", CP, "v1.28.5", "c1-control-plane"),
    ]
    assert [s.action for s in result.steps] == ["RollBack", "WaitRollout"] * 3
    cp_move = result.steps[4]
    assert isinstance(cp_move, GoBack)
    assert cp_move.reason == "same-minor change v1.28.5 → v1.28.9"
    assert (cp_move.image_from, cp_move.image_to) == ("ubuntu-2204-kube-v1.28.9", "ubuntu-2204-kube-v1.28.5")
    document = result.to_document()
    assert (document["kind"], document["status"]["changesPending"]) == ("RollbackPlan", True)

    roll_back(objects)
    again = plan_rollback(inventory(objects))
    assert (again.done, again.refusals) == (True, ())
    assert sorted(again.rolled_back) == sorted([CP, MD0, MD1])
    kcp_history = read_history(
        named(objects, "KubeadmControlPlane", "c1-control-plane")["metadata"]["annotations"]
    )
    assert [(r.action, r.to_version, r.to_template) for r in kcp_history] == [
        (ACTION_ROLLBACK, "v1.28.5", "c1-control-plane"),
        (ACTION_UPGRADE, "v1.28.9", "c1-control-plane-v1-28-9"),
    ]


@pytest.mark.parametrize("capi", CAPIS)
def test_completed_minor_upgrade_cannot_go_back(capi: str) -> None:
    objects = cluster(capi)
    upgrade(objects, "v1.29.3")
    result = plan_rollback(inventory(objects))
    assert result.done and not result.rolled_back
    reasons = refused(result)
    assert reasons[CP].startswith("completed its minor upgrade v1.28.5 → v1.29.3")
    assert "outside the kubeadm skew of the control plane at v1.29.3" in reasons[MD0]
    assert "outside the kubeadm skew" in reasons[MD1]


@pytest.mark.parametrize("capi", CAPIS)
def test_control_plane_minor_upgrade_not_completed_goes_back_first(capi: str) -> None:
    objects = cluster(capi)
    upgrade(objects, "v1.29.3", stop_before_wait_of=CP)
    stall_control_plane(objects, [("v1.28.5", 2), ("v1.29.3", 1)])
    result = plan_rollback(inventory(objects))
    assert moves(result) == [("RollBack", CP, "v1.28.5", "c1-control-plane")]
    cp_move = result.steps[0]
    assert isinstance(cp_move, GoBack)
    assert (
        cp_move.reason == "minor change v1.28.5 → v1.29.3; rollout not completed (machines still run v1.28.5)"
    )
    assert refused(result) == {}
    assert any("c1-md-0: no upgrade recorded" in note for note in result.notes)


@pytest.mark.parametrize("capi", CAPIS)
def test_worker_goes_back_within_the_control_plane_minor_only(capi: str) -> None:
    # The control plane finished v1.29.3; a MachineDeployment then moved v1.29.3 -> an image rotation.
    objects = cluster(capi, version="v1.29.3", md_count=2)
    md0 = named(objects, "MachineDeployment", "c1-md-0")
    record(md0, ACTION_UPGRADE, "v1.29.3", "c1-md-0-rotated", "2026-03-01T10:00:00Z")
    rotated = named(objects, "CloudStackMachineTemplate", "c1-md-0")
    objects.append({**rotated, "metadata": {**rotated["metadata"], "name": "c1-md-0-rotated", "uid": "x"}})
    settle(md0)
    result = plan_rollback(inventory(objects))
    assert moves(result) == [("RollBack", MD0, "v1.29.3", "c1-md-0")]
    assert result.steps[0].reason == "image-only change"  # type: ignore[union-attr]


@pytest.mark.parametrize("capi", CAPIS)
def test_worker_never_ends_newer_than_the_control_plane(capi: str) -> None:
    # The control plane went back already; a MachineDeployment recorded v1.28.9 -> v1.29.0 would overtake it.
    objects = cluster(capi, version="v1.28.5", worker_versions=["v1.29.3", "v1.28.5"])
    md0 = named(objects, "MachineDeployment", "c1-md-0")
    record(md0, ACTION_UPGRADE, "v1.29.4", "c1-md-0", "2026-03-01T10:00:00Z")
    settle(md0)
    reasons = refused(plan_rollback(inventory(objects)))
    assert reasons[MD0].startswith("going back to v1.29.3 would leave it outside the kubeadm skew")

    objects = cluster(capi, version="v1.28.5", worker_versions=["v1.28.9", "v1.28.5"])
    md0 = named(objects, "MachineDeployment", "c1-md-0")
    record(md0, ACTION_UPGRADE, "v1.28.10", "c1-md-0", "2026-03-01T10:00:00Z")
    settle(md0)
    reasons = refused(plan_rollback(inventory(objects)))
    assert "would make it newer than the control plane at v1.28.5" in reasons[MD0]


@pytest.mark.parametrize("capi", CAPIS)
def test_control_plane_stays_when_a_worker_would_be_newer(capi: str) -> None:
    objects = cluster(capi, version="v1.28.9", worker_versions=["v1.28.9", "v1.28.9"])
    kcp = named(objects, "KubeadmControlPlane", "c1-control-plane")
    kcp["spec"]["version"] = "v1.28.5"
    record(kcp, ACTION_UPGRADE, "v1.28.9", "c1-control-plane", "2026-03-01T10:00:00Z")
    settle(kcp)
    result = plan_rollback(inventory(objects))
    assert result.done
    assert (
        "MachineDeployment/c1-md-0, which stays at v1.28.9, newer than the control plane"
        in refused(result)[CP]
    )


@pytest.mark.parametrize("capi", CAPIS)
def test_refuses_what_the_record_no_longer_describes(capi: str) -> None:
    objects = cluster(capi)
    upgrade(objects, "v1.28.9")
    set_version_and_template(named(objects, "MachineDeployment", "c1-md-0"), "v1.28.9", "hand-made")
    objects.remove(named(objects, "CloudStackMachineTemplate", "c1-md-1"))
    reasons = refused(plan_rollback(inventory(objects)))
    assert reasons[MD0].startswith(
        "was changed after its last recorded upgrade (it is at v1.28.9 with hand-made"
    )
    assert reasons[MD1] == "its previous CloudStackMachineTemplate c1-md-1 no longer exists"


@pytest.mark.parametrize("capi", CAPIS)
def test_waits_for_a_rollback_still_rolling_out(capi: str) -> None:
    objects = cluster(capi)
    upgrade(objects, "v1.28.9")
    first = plan_rollback(inventory(objects))
    md_move = first.steps[0]
    assert isinstance(md_move, GoBack)
    record(
        named(objects, "MachineDeployment", "c1-md-0"),
        ACTION_ROLLBACK,
        "v1.28.5",
        "c1-md-0",
        "2026-03-02T00:00:00Z",
    )
    resumed = plan_rollback(inventory(objects))
    assert [(s.action, s.subject) for s in resumed.steps][:3] == [
        ("WaitRollout", MD0),
        ("RollBack", MD1),
        ("WaitRollout", MD1),
    ]
    assert resumed.covered_by(first)


def test_nothing_recorded_and_topology_clusters_are_plan_errors() -> None:
    with pytest.raises(PlanError, match="no upgrade is recorded"):
        plan_rollback(inventory(cluster()))
    objects = cluster("v1beta1")
    named(objects, "Cluster", "c1")["spec"]["topology"] = {"class": "cc", "version": "v1.28.5"}
    with pytest.raises(PlanError, match="topology-managed"):
        plan_rollback(inventory(objects))


@pytest.mark.parametrize("capi", CAPIS)
def test_an_on_delete_deployment_goes_back_unwaited_and_its_newer_machines_hold_the_control_plane(
    capi: str,
) -> None:
    objects = scene(capi)  # c1-md-0 has the OnDelete strategy
    upgrade(objects, "v1.28.9")
    md0_machines = [m for m in of_kind(objects, "Machine") if m["metadata"]["name"].startswith("c1-md-0")]
    for machine in md0_machines:  # the operator deleted them: their replacements run v1.28.9
        machine["spec"]["version"] = "v1.28.9"
    names = " ".join(sorted(m["metadata"]["name"] for m in md0_machines))

    result = plan_rollback(inventory(objects))

    assert moves(result) == [
        ("RollBack", MD0, "v1.28.5", "c1-md-0"),
        ("RollBack", MD1, "v1.28.5", "c1-md-1"),
    ]
    assert [(s.action, s.subject) for s in result.steps] == [
        ("RollBack", MD0),  # not waited for: Cluster API replaces its Machines only once deleted
        ("RollBack", MD1),
        ("WaitRollout", MD1),
    ]
    assert refused(result)[CP].startswith(
        f"going back to v1.28.5 would leave Machines {names} of {MD0} (OnDelete: replaced only once deleted)"
    )
    (note,) = [n for n in result.notes if n.startswith(MD0)]
    assert f"{names} keep running their version" in note and "kubectl delete machine -n ns NAME" in note

    for step in result.writes:
        record(named(objects, step.kind, step.name), ACTION_ROLLBACK, step.version_to, step.template_to,
               "2026-03-02T09:00:00Z")  # fmt: skip
    settle(named(objects, "MachineDeployment", "c1-md-1"))
    for machine in md0_machines:  # deleted again: back at the deployment's version
        machine["spec"]["version"] = "v1.28.5"

    then = plan_rollback(inventory(objects))

    assert moves(then) == [("RollBack", CP, "v1.28.5", "c1-control-plane")]
    assert [s.action for s in then.steps] == ["RollBack", "WaitRollout"]
    assert then.refusals == ()


@pytest.mark.parametrize("capi", CAPIS)
def test_an_on_delete_deployment_whose_machines_never_moved_goes_back_with_the_control_plane(
    capi: str,
) -> None:
    objects = scene(capi)  # c1-md-0 has the OnDelete strategy; its Machines stay at v1.28.5
    upgrade(objects, "v1.28.9")

    result = plan_rollback(inventory(objects))

    assert result.refusals == ()
    assert [(s.action, s.subject) for s in result.steps] == [
        ("RollBack", MD0),
        ("RollBack", MD1),
        ("WaitRollout", MD1),
        ("RollBack", CP),
        ("WaitRollout", CP),
    ]
    (note,) = [n for n in result.notes if n.startswith(MD0)]
    assert note.endswith("since Cluster API replaces a Machine only once it is deleted")  # none left behind
