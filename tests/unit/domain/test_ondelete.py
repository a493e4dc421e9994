"""MachineDeployments with the OnDelete strategy: the model reads the strategy in both API shapes, the
planner patches them without waiting (leave) or replaces their Machines one at a time (replace), and the
decision of which Machine goes next keeps within maxUnavailable and one below the ready count."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubectl_capc.domain.inventory import build_inventories, parse_machine
from kubectl_capc.domain.model import (
    Machine,
    MachineRole,
    RolloutStrategy,
    resolve_fencepost,
    scaled_count,
)
from kubectl_capc.domain.ondelete import next_step
from kubectl_capc.domain.plan import OnDeleteMode, PatchObject, RollOnDelete, WaitRollout
from kubectl_capc.domain.records import Rotation, read_history, rotation_annotations
from tests.support.fixtures_capc import raw_objects
from tests.support.ondelete_scene import running, scene, set_strategy
from tests.support.planner_scenes import all_steps, execute, images, listing, named, of_kind
from tests.support.planner_scenes import plan as make_plan

CAPIS = ["v1beta1", "v1beta2"]
TEMPLATES = listing(images("v1.28.5", "v1.29.3"))


def inventory(objects: list[dict[str, Any]], capi: str) -> Any:
    (inv,) = build_inventories(raw_objects(objects), capi)  # type: ignore[arg-type]
    return inv


def patched(objects: list[dict[str, Any]], name: str, version: str, template: str) -> None:
    """The OnDelete deployment after its patch: new spec, Machines untouched, rollout not finished."""
    md = named(objects, "MachineDeployment", name)
    md["spec"]["template"]["spec"]["version"] = version
    md["spec"]["template"]["spec"]["infrastructureRef"]["name"] = template
    md["metadata"]["generation"] = 2
    md["status"]["observedGeneration"] = 2
    key = "upToDateReplicas" if md["apiVersion"].endswith("/v1beta2") else "updatedReplicas"
    md["status"][key] = 0


# -- the model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("capi", CAPIS)
def test_strategy_is_read_from_each_api_shape_with_capi_defaults(capi: str) -> None:
    objects = scene(capi, on_delete=())
    set_strategy(
        named(objects, "MachineDeployment", "c1-md-1"),
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 1}},
    )
    deployments = {md.name: md for md in inventory(objects, capi).machine_deployments}
    assert deployments["c1-md-0"].strategy == RolloutStrategy("RollingUpdate", 1, 0)
    assert deployments["c1-md-1"].strategy == RolloutStrategy("RollingUpdate", "50%", 1)
    assert not deployments["c1-md-1"].strategy.on_delete

    set_strategy(named(objects, "MachineDeployment", "c1-md-0"), {"type": "OnDelete"})
    md0 = next(md for md in inventory(objects, capi).machine_deployments if md.name == "c1-md-0")
    assert md0.strategy.on_delete and str(md0.strategy) == "OnDelete"


def test_the_other_shapes_field_is_not_read() -> None:
    objects = scene("v1beta2", on_delete=())
    named(objects, "MachineDeployment", "c1-md-0")["spec"]["strategy"] = {"type": "OnDelete"}
    md0 = next(md for md in inventory(objects, "v1beta2").machine_deployments if md.name == "c1-md-0")
    assert not md0.strategy.on_delete, "v1beta2 keeps the strategy under spec.rollout"


def test_percentages_resolve_like_capi() -> None:
    assert resolve_fencepost("25%", 10, round_up=False) == 2
    assert resolve_fencepost("25%", 10, round_up=True) == 3
    assert resolve_fencepost(3, 10, round_up=False) == 3
    assert RolloutStrategy("OnDelete", 1, "50%").unavailable_allowed(3) == 1


def test_a_count_is_an_int_a_number_or_a_percentage_and_nothing_else() -> None:
    assert scaled_count(" 2 ", 10, round_up=True) == 2
    assert scaled_count("05%", 10, round_up=True) == scaled_count("5%", 10, round_up=True) == 1
    with pytest.raises(ValueError, match="neither a number nor a percentage"):
        scaled_count("-1%", 10, round_up=True)
    assert resolve_fencepost("a lot", 10, round_up=False) == 0
    assert resolve_fencepost(-2, 10, round_up=False) == 0


@pytest.mark.parametrize("capi", CAPIS)
def test_machine_node_readiness_comes_from_its_conditions(capi: str) -> None:
    objects = scene(capi)
    machine = copy.deepcopy(of_kind(objects, "Machine")[0])
    assert parse_machine(machine).ready
    running(machine, node_ready=False)
    assert parse_machine(machine).node_ready is False and not parse_machine(machine).ready
    running(machine, node_ready=None)
    assert parse_machine(machine).node_ready is None and parse_machine(machine).ready
    machine["status"]["phase"] = "Provisioning"
    assert not parse_machine(machine).ready


def test_v1beta1_node_healthy_counts_when_no_node_ready_is_reported() -> None:
    machine = copy.deepcopy(of_kind(scene("v1beta1"), "Machine")[0])
    running(machine, node_ready=None)
    machine["status"]["conditions"] = [
        {"type": "NodeHealthy", "status": "False", "reason": "NodeProvisioning"}
    ]
    assert parse_machine(machine).node_ready is False


# -- the plan -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("capi", CAPIS)
def test_leave_patches_the_on_delete_deployment_and_waits_only_for_the_others(capi: str) -> None:
    objects = scene(capi)
    result = make_plan(objects, "v1.29.3", TEMPLATES)
    steps = all_steps(result)
    md0 = [s for s in steps if s.subject == "MachineDeployment/c1-md-0"]
    assert [s.action for s in md0] == ["Patch", "RollOnDelete"]
    patch, roll = md0
    assert isinstance(patch, PatchObject) and patch.on_delete == "leave"
    assert isinstance(roll, RollOnDelete) and roll.mode is OnDeleteMode.LEAVE and not roll.writes
    assert roll.machines == ("c1-md-0-0", "c1-md-0-1")
    assert "not waited for" in roll.summary()
    waits = [s for s in steps if isinstance(s, WaitRollout)]
    assert [w.subject for w in waits] == ["KubeadmControlPlane/c1-control-plane", "MachineDeployment/c1-md-1"]
    assert dict(result.strategies) == {
        "c1-md-0": "OnDelete",
        "c1-md-1": "RollingUpdate (maxSurge 1, maxUnavailable 0)",
    }
    document = result.to_document()
    assert document["status"]["current"]["strategies"]["c1-md-0"] == "OnDelete"
    (old,) = result.old_machines
    assert (old.deployment, old.version) == ("c1-md-0", "v1.29.3")
    assert old.names == ("c1-md-0-0", "c1-md-0-1") and old.what() == "at v1.28.5"
    assert any(
        "kubectl delete machine -n ns" in note and "--on-delete=replace" in note for note in result.notes
    )
    json.dumps(document)


@pytest.mark.parametrize("capi", CAPIS)
def test_leave_after_the_patch_is_done_and_still_names_the_old_machines(capi: str) -> None:
    objects = scene(capi)
    for md in ("c1-md-0", "c1-md-1"):
        patched(objects, md, "v1.29.3", f"{md}-v1-29-3")
    named(objects, "KubeadmControlPlane", "c1-control-plane")["spec"]["version"] = "v1.29.3"
    for obj in of_kind(objects, "CloudStackMachineTemplate"):
        clone = copy.deepcopy(obj)
        clone["metadata"]["name"] = f"{obj['metadata']['name']}-v1-29-3"
        clone["spec"]["template"]["spec"]["template"]["name"] = "ubuntu-2204-kube-v1.29.3"
        objects.append(clone)
    named(objects, "KubeadmControlPlane", "c1-control-plane")["spec"]["machineTemplate"].get(
        "spec", named(objects, "KubeadmControlPlane", "c1-control-plane")["spec"]["machineTemplate"]
    )["infrastructureRef"]["name"] = "c1-control-plane-v1-29-3"
    for machine in of_kind(objects, "Machine"):
        if "cluster.x-k8s.io/control-plane" in machine["metadata"]["labels"]:
            machine["spec"]["version"] = "v1.29.3"
    named(objects, "KubeadmControlPlane", "c1-control-plane")["status"]["version"] = "v1.29.3"
    c1_md_1 = named(objects, "MachineDeployment", "c1-md-1")
    c1_md_1["status"]["upToDateReplicas" if capi == "v1beta2" else "updatedReplicas"] = 2
    for machine in of_kind(objects, "Machine"):
        if machine["metadata"]["labels"].get("cluster.x-k8s.io/deployment-name") == "c1-md-1":
            machine["spec"]["version"] = "v1.29.3"

    leave = make_plan(objects, "v1.29.3", TEMPLATES)
    assert leave.done and not leave.blockers
    assert [(o.deployment, len(o.machines)) for o in leave.old_machines] == [("c1-md-0", 2)]

    replace = make_plan(objects, "v1.29.3", TEMPLATES, on_delete=OnDeleteMode.REPLACE)
    (step,) = all_steps(replace)
    assert isinstance(step, RollOnDelete) and step.mode is OnDeleteMode.REPLACE and step.writes
    assert step.machines == ("c1-md-0-0", "c1-md-0-1") and not replace.old_machines


@pytest.mark.parametrize("capi", CAPIS)
def test_replace_takes_the_place_of_the_wait_and_is_covered_on_resume(capi: str) -> None:
    objects = scene(capi, rollingUpdate={"maxUnavailable": 1})
    first = make_plan(objects, "v1.29.3", TEMPLATES, on_delete=OnDeleteMode.REPLACE)
    steps = all_steps(first)
    index = next(i for i, s in enumerate(steps) if s.subject == "MachineDeployment/c1-md-0")
    patch, roll = steps[index], steps[index + 1]
    assert isinstance(patch, PatchObject) and patch.on_delete == "replace"
    assert isinstance(roll, RollOnDelete) and roll.writes and roll.max_unavailable == 1
    assert "one at a time" in roll.summary()
    assert not first.old_machines, "replace leaves none"
    assert not any(isinstance(s, WaitRollout) and "c1-md-0" in s.names for s in steps)

    for step in steps[: index + 1]:  # killed right after the patch of c1-md-0
        execute(objects, step)
    resumed = make_plan(objects, "v1.29.3", TEMPLATES, on_delete=OnDeleteMode.REPLACE)
    assert resumed.covered_by(first)
    head = all_steps(resumed)[0]
    assert isinstance(head, RollOnDelete) and head.name == "c1-md-0" and head.mode is OnDeleteMode.REPLACE
    left = make_plan(objects, "v1.29.3", TEMPLATES)
    assert not any(s.subject == "MachineDeployment/c1-md-0" for s in all_steps(left)), (
        "leave waits for nothing"
    )


def test_the_history_records_what_was_done_with_the_old_machines() -> None:
    step = PatchObject("MachineDeployment", "md", "v1.28.5", "v1.29.3", "a", "b", "i", "j", on_delete="leave")
    from datetime import datetime, timezone

    annotations = rotation_annotations(Rotation.of(step, "upgrade", datetime.now(timezone.utc)), {})
    (entry,) = read_history(annotations)
    assert entry.on_delete == "leave"
    plain = rotation_annotations(
        Rotation.of(
            PatchObject("MachineDeployment", "md", "a", "b", "c", "d", "e", "f"),
            "upgrade",
            datetime.now(timezone.utc),
        ),
        {},
    )
    assert "onDelete" not in plain["capc.kubectl.io/history"]


# -- which Machine goes next ----------------------------------------------------------------------------


def machine(
    name: str, version: str, *, ready: bool = True, deleting: bool = False, template: str = ""
) -> Machine:
    return Machine(
        "ns", name, MachineRole.WORKER, "md", version, "", "fd", "Running" if ready else "Provisioning",
        name if ready else "", None, deleting, machine_template=template,
    )  # fmt: skip


def decide(machines: list[Machine], *, desired: int = 3, max_unavailable: int = 0, baseline: int = 3) -> Any:
    return next_step(
        machines, version="v1.29.3", template="md-new", desired=desired, max_unavailable=max_unavailable,
        baseline_ready=baseline,
    )  # fmt: skip


def test_the_oldest_old_machine_goes_first_when_everything_is_ready() -> None:
    machines = [machine("a", "v1.28.5"), machine("b", "v1.28.5"), machine("c", "v1.29.3")]
    decision = decide(machines)
    assert (decision.delete, decision.old, decision.ready, decision.up_to_date) == ("a", 2, 3, 1)


def test_nothing_more_is_deleted_while_one_is_deleting_or_its_replacement_is_not_ready() -> None:
    deleting = [machine("a", "v1.28.5", deleting=True), machine("b", "v1.28.5"), machine("c", "v1.29.3")]
    assert decide(deleting).delete == "" and "a" in decide(deleting).waiting
    gone = [machine("b", "v1.28.5"), machine("c", "v1.29.3")]
    assert decide(gone).delete == "", "ready count is one below where it started"
    in_flight = [machine("b", "v1.28.5"), machine("c", "v1.29.3"), machine("d", "v1.29.3", ready=False)]
    assert decide(in_flight).delete == "" and "Node of Machine d" in decide(in_flight).waiting
    replaced = [machine("b", "v1.28.5"), machine("c", "v1.29.3"), machine("d", "v1.29.3")]
    assert decide(replaced).delete == "b"


def test_max_unavailable_counts_machines_that_are_not_ready_for_other_reasons() -> None:
    broken = [machine("a", "v1.28.5"), machine("b", "v1.28.5", ready=False), machine("c", "v1.28.5")]
    assert decide(broken, baseline=2).delete == "", "a second unavailable machine exceeds maxUnavailable 0"
    assert decide(broken, baseline=2, max_unavailable=2).delete == "a"


def test_done_once_every_machine_is_new_and_ready() -> None:
    assert decide([machine(n, "v1.29.3") for n in "abc"]).done
    assert not decide([machine(n, "v1.29.3") for n in "ab"]).done, "a replacement is still to come"


def test_leave_refuses_to_take_the_control_plane_more_than_three_minors_past_old_kubelets() -> None:
    objects = scene("v1beta2")
    templates = listing(images("v1.28.5", "v1.29.3", "v1.30.2", "v1.31.1", "v1.32.0"))
    within = make_plan(objects, "v1.31.1", templates)
    assert not within.blockers, "v1.28 kubelets may serve a v1.31 control plane"
    beyond = make_plan(objects, "v1.32.0", templates)
    (blocker,) = beyond.blockers
    assert blocker.subject == "MachineDeployment/c1-md-0"
    assert "c1-md-0-0 (v1.28.5)" in blocker.message and "--on-delete=replace" in blocker.hint
    assert not make_plan(objects, "v1.32.0", templates, on_delete=OnDeleteMode.REPLACE).blockers


# -- a change of image only: same version, another CloudStackMachineTemplate ---------------------------


def test_a_machine_is_old_when_its_version_or_its_known_template_differs() -> None:
    assert machine("a", "v1.28.5", template="md-new").outdated("v1.29.3", "md-new")
    assert machine("a", "1.29.3", template="md-old").outdated("v1.29.3", "md-new")
    assert not machine("a", "1.29.3", template="md-new").outdated("v1.29.3", "md-new")
    assert not machine("a", "v1.29.3").outdated("v1.29.3", "md-new"), "unknown template: by version"
    assert not machine("a", "v1.29.3", template="md-old").outdated("v1.29.3", ""), "no template to compare"


def test_machines_on_the_old_template_are_replaced_oldest_first_at_the_same_version() -> None:
    machines = [
        machine("a", "v1.29.3", template="md-old"),
        machine("b", "v1.29.3", template="md-old"),
        machine("c", "v1.29.3", template="md-new"),
    ]
    decision = decide(machines)
    assert (decision.delete, decision.old, decision.up_to_date) == ("a", 2, 1)
    coming = [machines[1], machines[2], machine("d", "v1.29.3", ready=False)]  # d's template not read yet
    assert decide(coming).delete == "" and "Node of Machine d" in decide(coming).waiting
    done = [machine(n, "v1.29.3", template="md-new") for n in "cd"] + [machine("e", "v1.29.3")]
    assert decide(done).done


def with_cloudstack_machines(objects: list[dict[str, Any]], template_of: dict[str, str]) -> None:
    """Each Machine's CloudStackMachine as CAPI clones it: named like the Machine, annotated with the
    template of its owner (`template_of`: owner label value -> template)."""
    for machine_obj in of_kind(objects, "Machine"):
        labels = machine_obj["metadata"]["labels"]
        owner = labels.get("cluster.x-k8s.io/deployment-name") or labels.get(
            "cluster.x-k8s.io/control-plane-name", ""
        )
        objects.append(
            {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
                "kind": "CloudStackMachine",
                "metadata": {
                    "name": machine_obj["spec"]["infrastructureRef"]["name"],
                    "namespace": machine_obj["metadata"]["namespace"],
                    "annotations": {
                        "cluster.x-k8s.io/cloned-from-name": template_of.get(owner, owner),
                        "cluster.x-k8s.io/cloned-from-groupkind": "CloudStackMachineTemplate."
                        "infrastructure.cluster.x-k8s.io",
                    },
                },
            }
        )


@pytest.mark.parametrize("capi", CAPIS)
def test_the_inventory_knows_the_template_each_machine_was_built_from(capi: str) -> None:
    objects = scene(capi)
    with_cloudstack_machines(objects, {})
    objects[-1]["metadata"]["annotations"]["cluster.x-k8s.io/cloned-from-groupkind"] = "Other.example.com"
    built = {m.name: m.machine_template for m in inventory(objects, capi).machines}
    last = objects[-1]["metadata"]["name"]
    assert built.pop(last) == "", "cloned from another kind: not known"
    assert built == {
        m["metadata"]["name"]: m["metadata"]["name"].rsplit("-", 1)[0]
        for m in of_kind(objects, "Machine")
        if m["metadata"]["name"] != last
    }


IMAGE = "ubuntu-2404-kube-v1.28.5"
REBUILT = listing([*images("v1.28.5"), IMAGE])


@pytest.mark.parametrize("capi", CAPIS)
def test_an_image_only_change_leaves_and_names_the_machines_on_the_old_template(capi: str) -> None:
    objects = scene(capi)
    with_cloudstack_machines(objects, {})

    result = make_plan(objects, "v1.28.5", REBUILT, image=IMAGE)

    roll = next(s for s in all_steps(result) if isinstance(s, RollOnDelete))
    assert (roll.name, roll.template, roll.machines) == (
        "c1-md-0",
        "c1-md-0-v1-28-5",
        ("c1-md-0-0", "c1-md-0-1"),
    )
    assert "keep their version and image" in roll.summary()
    (old,) = result.old_machines
    assert old.names == ("c1-md-0-0", "c1-md-0-1") and old.template == "c1-md-0-v1-28-5"
    assert old.what() == "on CloudStackMachineTemplate c1-md-0"
    assert old.to_document()["machines"][0] == {
        "name": "c1-md-0-0", "version": "v1.28.5", "machineTemplate": "c1-md-0",
    }  # fmt: skip
    assert any("keep running on CloudStackMachineTemplate c1-md-0" in note for note in result.notes)


@pytest.mark.parametrize("capi", CAPIS)
def test_an_image_only_replace_resumes_with_the_machines_still_on_the_old_template(capi: str) -> None:
    objects = scene(capi)
    with_cloudstack_machines(objects, {})
    first = make_plan(objects, "v1.28.5", REBUILT, image=IMAGE, on_delete=OnDeleteMode.REPLACE)
    steps = all_steps(first)
    index = next(i for i, s in enumerate(steps) if isinstance(s, RollOnDelete))
    for step in steps[:index]:  # stopped while replacing c1-md-0: its first Machine was replaced
        execute(objects, step)
    patched(objects, "c1-md-0", "v1.28.5", "c1-md-0-v1-28-5")
    for obj in of_kind(objects, "CloudStackMachine"):
        if obj["metadata"]["name"] == "c1-md-0-0":
            obj["metadata"]["annotations"]["cluster.x-k8s.io/cloned-from-name"] = "c1-md-0-v1-28-5"

    resumed = make_plan(objects, "v1.28.5", REBUILT, on_delete=OnDeleteMode.REPLACE)

    head = all_steps(resumed)[0]
    assert isinstance(head, RollOnDelete) and head.mode is OnDeleteMode.REPLACE
    assert (head.template, head.machines) == ("c1-md-0-v1-28-5", ("c1-md-0-1",))
    left = make_plan(objects, "v1.28.5", REBUILT)
    assert [o.names for o in left.old_machines] == [("c1-md-0-1",)]
