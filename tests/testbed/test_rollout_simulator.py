"""The rollout simulator rolls KCPs and MachineDeployments, their Machines included, as CAPI does.

The first half checks the model, the Machines and the rendered status without an apiserver; the second
half runs against the real test bed (both CAPI profiles), where the simulator process started by the
bed drives real objects through the status subresource and the upstream CRD schemas validate every write.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client, watch

from tests.support.memory_apiserver import MemoryApi
from tests.testenv.bed import TestBed
from tests.testenv.crds import capi_crd
from tests.testenv.rollout import Simulator, _Event, _Watcher
from tests.testenv.rollout_machines import (
    BUILT_FROM_ANNOTATION,
    MACHINE,
    built_from,
    machine_status,
    new_machine,
    phase_of,
    plan_machines,
    slots,
)
from tests.testenv.rollout_model import FAIL_ANNOTATION, STALL_ANNOTATION, Controls, Rollout, Stage, Target
from tests.testenv.rollout_status import (
    KUBEADM_CONTROL_PLANE,
    MACHINE_DEPLOYMENT,
    Resource,
    adopt,
    condition_reason,
    desired_target,
    render_status,
)

INFRA_GROUP = "infrastructure.cluster.x-k8s.io"
CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
OLD = Target("v1.30.2", (INFRA_GROUP, "CloudStackMachineTemplate", "cp-v1-30"))
NEW = Target("v1.31.0", (INFRA_GROUP, "CloudStackMachineTemplate", "cp-v1-31"))
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def observed(rollout: Rollout) -> tuple[int, int, int]:
    return rollout.replicas, rollout.up_to_date, rollout.ready


def run_until_idle(rollout: Rollout, controls: Controls | None = None) -> list[tuple[int, int, int]]:
    """Advance one stage per second of fake time until nothing moves; return every distinct state seen."""
    seen = [observed(rollout)]
    for second in range(50):
        if rollout.advance(float(second), 1.0, controls or Controls()):
            seen.append(observed(rollout))
        elif rollout.next_step_at is None:
            break
    return seen


def cond(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(c for c in conditions if c["type"] == kind)


# -- the model ------------------------------------------------------------------------------------


def test_a_rollout_replaces_one_machine_at_a_time_with_one_surge_machine() -> None:
    rollout = Rollout.completed(OLD, 3)
    rollout.retarget(NEW)

    seen = run_until_idle(rollout)

    # (replicas, up-to-date, ready): create a new machine, wait for it, delete an old one; three times.
    assert seen == [
        (3, 0, 3),
        (4, 1, 3), (4, 1, 4), (3, 1, 3),
        (4, 2, 3), (4, 2, 4), (3, 2, 3),
        (4, 3, 3), (4, 3, 4), (3, 3, 3),
    ]  # fmt: skip
    assert rollout.done
    assert rollout.machines == [NEW, NEW, NEW]


def test_each_stage_takes_a_third_of_seconds_per_machine() -> None:
    rollout = Rollout.completed(OLD, 1)
    rollout.retarget(NEW)
    rollout.advance(100.0, 0.5, Controls())  # schedules the first step
    assert rollout.stage is Stage.STEADY
    assert not rollout.advance(100.49, 0.5, Controls())
    assert rollout.advance(100.5, 0.5, Controls())
    assert rollout.stage is Stage.PROVISIONING
    assert rollout.advance(101.5, 0.5, Controls())  # two steps were due: one a call, so each is reported
    assert rollout.stage is Stage.REPLACING
    assert rollout.advance(101.5, 0.5, Controls())
    assert rollout.done
    assert not rollout.advance(101.5, 0.5, Controls())


def test_stall_at_holds_the_rollout_until_the_annotation_goes() -> None:
    rollout = Rollout.completed(OLD, 3)
    rollout.retarget(NEW)

    seen = run_until_idle(rollout, Controls(stall_at=1))

    assert seen[-1] == (3, 1, 3)
    assert not rollout.done
    assert [m.version for m in rollout.outdated] == ["v1.30.2", "v1.30.2"]
    run_until_idle(rollout)
    assert rollout.done


def test_fail_leaves_the_new_machine_unready_and_the_old_ones_serving() -> None:
    rollout = Rollout.completed(OLD, 3)
    rollout.retarget(NEW)
    controls = Controls(fail_reason="InstanceCreateFailed")

    seen = run_until_idle(rollout, controls)

    assert seen[-1] == (4, 1, 3)
    assert rollout.failing(controls)
    run_until_idle(rollout)
    assert rollout.done


def test_a_new_target_mid_rollout_makes_every_machine_outdated() -> None:
    rollout = Rollout.completed(OLD, 3)
    rollout.retarget(NEW)
    run_until_idle(rollout, Controls(stall_at=1))
    newer = Target("v1.31.4", NEW.infrastructure)

    rollout.retarget(newer)

    assert rollout.up_to_date == 0
    assert rollout.outdated_reasons() == [
        "* Version v1.30.2, v1.31.4 required",
        "* Version v1.31.0, v1.31.4 required",
        "* InfrastructureMachine is not up-to-date",
    ]
    run_until_idle(rollout)
    assert rollout.machines == [newer] * 3


def test_a_replacement_in_flight_is_finished_or_dropped_when_the_spec_changes_again() -> None:
    ready_surge = Rollout.completed(OLD, 2)
    ready_surge.retarget(NEW)
    ready_surge.stage = Stage.REPLACING
    ready_surge.retarget(OLD)
    assert (ready_surge.stage, ready_surge.machines) == (Stage.STEADY, [OLD, NEW])

    unready_surge = Rollout.completed(OLD, 2)
    unready_surge.retarget(NEW)
    unready_surge.stage = Stage.PROVISIONING
    unready_surge.retarget(OLD)
    assert (unready_surge.stage, unready_surge.machines) == (Stage.STEADY, [OLD, OLD])
    assert unready_surge.done


def test_scaling_is_immediate_and_removes_outdated_machines_first() -> None:
    rollout = Rollout(target=NEW, desired=3, machines=[OLD, NEW, OLD])
    rollout.resize(1)
    assert rollout.machines == [NEW]
    rollout.resize(3)
    assert rollout.machines == [NEW, NEW, NEW]
    assert rollout.done


def test_annotations_select_stall_and_fail() -> None:
    assert Controls.from_annotations(None) == Controls()
    assert Controls.from_annotations({STALL_ANNOTATION: "2", FAIL_ANNOTATION: "Boom"}) == Controls(2, "Boom")
    with pytest.raises(ValueError, match="stall-at"):
        Controls.from_annotations({STALL_ANNOTATION: "soon"})


# -- the Machines behind a rollout ---------------------------------------------------------------

KCP_OWNER = {
    "metadata": {"name": "c1-cp", "namespace": "ns", "uid": "kcp-uid", "labels": {CLUSTER_LABEL: "c1"}},
    "spec": {"machineTemplate": {"metadata": {"labels": {"team": "a"}}}},
}


class ApiServerMachines:
    """An owner's Machines as the apiserver holds them once each plan is carried out."""

    def __init__(self, existing: list[dict[str, Any]] | None = None) -> None:
        self.items = list(existing or [])
        self.created: list[str] = []
        self.deleted: list[str] = []

    def carry_out(self, rollout: Rollout) -> None:
        plan = plan_machines(rollout, self.items)
        for target, phase in plan.create:
            machine = new_machine("v1beta2", KUBEADM_CONTROL_PLANE, KCP_OWNER, "c1", target)
            machine["metadata"]["creationTimestamp"] = f"2026-01-01T00:{len(self.created):02d}:00Z"
            machine["status"] = {"phase": phase}
            self.items.append(machine)
            self.created.append(machine["metadata"]["name"])
        for machine, phase in plan.report:
            machine["status"] = {"phase": phase}
        for machine in plan.delete:
            self.items.remove(machine)
            self.deleted.append(machine["metadata"]["name"])

    def states(self) -> list[tuple[str, str]]:
        return sorted((m["spec"]["version"], phase_of(m)) for m in self.items)

    def match(self, rollout: Rollout) -> bool:
        return self.states() == sorted((target.version, phase) for target, phase in slots(rollout))


def roll(rollout: Rollout, machines: ApiServerMachines, controls: Controls | None = None) -> int:
    """Advance one stage per second of fake time, carrying out each plan; return the most Machines seen."""
    most = 0
    for second in range(50):
        rollout.advance(float(second), 1.0, controls or Controls())
        machines.carry_out(rollout)
        assert machines.match(rollout), (rollout, machines.states())
        most = max(most, len(machines.items))
        if rollout.next_step_at is None:
            break
    return most


def test_machines_come_up_at_the_new_version_and_the_oldest_old_one_goes_each_step() -> None:
    rollout = Rollout.completed(OLD, 3)
    rollout.retarget(NEW)
    machines = ApiServerMachines()
    machines.carry_out(rollout)  # the rollout starts: the old machines become Machines first
    old_names = list(machines.created)

    assert roll(rollout, machines) == 4, "one surge Machine at a time"

    assert machines.states() == [("v1.31.0", "Running")] * 3
    assert machines.deleted == old_names, "old Machines are deleted oldest first"
    assert len(machines.created) == 6
    plan = plan_machines(rollout, machines.items)
    assert (plan.create, plan.report, plan.delete) == ([], [], []), "nothing more to write once done"


def test_a_failing_replacement_stays_provisioning_next_to_the_old_machines() -> None:
    rollout = Rollout.completed(OLD, 3)
    rollout.retarget(NEW)
    machines = ApiServerMachines()
    controls = Controls(fail_reason="ImagePullFailed")

    roll(rollout, machines, controls)

    assert machines.states() == [("v1.30.2", "Running")] * 3 + [("v1.31.0", "Provisioning")]
    stuck = next(m for m in machines.items if phase_of(m) == "Provisioning")
    roll(rollout, machines)  # the cause is fixed: the same Machine becomes ready
    assert stuck in machines.items and phase_of(stuck) == "Running"
    assert machines.states() == [("v1.31.0", "Running")] * 3


def test_machines_made_by_a_test_count_as_the_old_ones_instead_of_being_duplicated() -> None:
    hand_made = [
        {"metadata": {"name": f"c1-cp-{i}", "namespace": "ns"}, "spec": {"version": "v1.30.2"},
         "status": {"phase": "Running"}}
        for i in range(2)
    ]  # fmt: skip
    rollout = Rollout.completed(OLD, 2)
    rollout.retarget(NEW)
    machines = ApiServerMachines(hand_made)

    machines.carry_out(rollout)
    assert machines.created == []

    assert roll(rollout, machines) == 3
    assert sorted(machines.deleted) == ["c1-cp-0", "c1-cp-1"]
    assert machines.states() == [("v1.31.0", "Running")] * 2


def test_a_replacement_dropped_by_a_new_spec_loses_its_machine() -> None:
    rollout = Rollout.completed(OLD, 2)
    rollout.retarget(NEW)
    machines = ApiServerMachines()
    roll(rollout, machines, Controls(fail_reason="Boom"))
    provisioning = next(m["metadata"]["name"] for m in machines.items if phase_of(m) == "Provisioning")

    rollout.retarget(OLD)
    machines.carry_out(rollout)

    assert machines.deleted == [provisioning]
    assert machines.states() == [("v1.30.2", "Running")] * 2


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_machine_carries_the_labels_refs_and_owner_capi_sets(capi: str) -> None:
    machine = new_machine(capi, KUBEADM_CONTROL_PLANE, KCP_OWNER, "c1", NEW)
    name = machine["metadata"]["name"]

    assert re.fullmatch(r"c1-cp-[a-z0-9]{5}", name)
    assert machine["metadata"]["labels"] == {
        "team": "a",
        CLUSTER_LABEL: "c1",
        "cluster.x-k8s.io/control-plane": "",
        "cluster.x-k8s.io/control-plane-name": "c1-cp",
    }
    (owner,) = machine["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("KubeadmControlPlane", "kcp-uid", True)
    assert machine["spec"]["version"] == "v1.31.0"
    infra = machine["spec"]["infrastructureRef"]
    assert (infra["kind"], infra["name"]) == ("CloudStackMachine", name)
    if capi == "v1beta1":
        assert infra["apiVersion"] == f"{INFRA_GROUP}/v1beta3"
        assert machine_status(capi, name, "Running")["nodeRef"]["name"] == name
    else:
        assert infra["apiGroup"] == INFRA_GROUP
        provisioning = machine_status(capi, name, "Provisioning")
        assert provisioning["initialization"]["infrastructureProvisioned"] is False
    assert built_from(machine) == NEW
    assert built_from({"metadata": {"annotations": {BUILT_FROM_ANNOTATION: "not json"}}}) is None


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_machine_reports_its_node_conditions_in_both_vocabularies(capi: str) -> None:
    def conditions(phase: str) -> tuple[dict[str, str], dict[str, str]]:
        status = machine_status(capi, "m", phase)
        if capi == "v1beta1":
            current, legacy = status["v1beta2"]["conditions"], status["conditions"]
        else:
            current, legacy = status["conditions"], status["deprecated"]["v1beta1"]["conditions"]
        ready = next(c for c in current if c["type"] == "NodeReady")
        return ready, next(c for c in legacy if c["type"] == "NodeHealthy")

    ready, healthy = conditions("Running")
    assert (ready["status"], ready["reason"], healthy["status"]) == ("True", "NodeReady", "True")
    ready, healthy = conditions("Provisioning")
    assert (ready["status"], ready["reason"]) == ("Unknown", "InspectionFailed")
    assert (healthy["status"], healthy["severity"], healthy["reason"]) == (
        "False",
        "Info",
        "NodeProvisioning",
    )


# -- reading objects ------------------------------------------------------------------------------


def kcp_object(capi: str, version: str, template: str, **extra: Any) -> dict[str, Any]:
    if capi == "v1beta1":
        ref = {"apiVersion": f"{INFRA_GROUP}/v1beta3", "kind": "CloudStackMachineTemplate", "name": template}
        machine_template: dict[str, Any] = {"infrastructureRef": ref}
    else:
        ref = {"apiGroup": INFRA_GROUP, "kind": "CloudStackMachineTemplate", "name": template}
        machine_template = {"spec": {"infrastructureRef": ref}}
    return {
        "metadata": {"name": "c1-cp", "namespace": "ns", "generation": 1, "resourceVersion": "1", **extra},
        "spec": {"replicas": 3, "version": version, "machineTemplate": machine_template},
    }


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_template_rename_rolls_out_but_a_new_api_version_of_the_same_template_does_not(capi: str) -> None:
    before = desired_target(KUBEADM_CONTROL_PLANE, kcp_object(capi, "v1.30.2", "cp-v1-30"))
    renamed = desired_target(KUBEADM_CONTROL_PLANE, kcp_object(capi, "v1.30.2", "cp-v1-30-b"))
    assert before == OLD
    assert renamed != before

    v1beta2_ref = kcp_object("v1beta1", "v1.30.2", "cp-v1-30")
    v1beta2_ref["spec"]["machineTemplate"]["infrastructureRef"]["apiVersion"] = f"{INFRA_GROUP}/v1beta2"
    assert desired_target(KUBEADM_CONTROL_PLANE, v1beta2_ref) == before


def test_machine_deployments_roll_out_on_bootstrap_template_changes_too() -> None:
    md = {
        "metadata": {"generation": 1},
        "spec": {
            "template": {
                "spec": {
                    "version": "v1.30.2",
                    "infrastructureRef": {
                        "apiGroup": INFRA_GROUP,
                        "kind": "CloudStackMachineTemplate",
                        "name": "w",
                    },
                    "bootstrap": {
                        "configRef": {
                            "apiGroup": "bootstrap.cluster.x-k8s.io",
                            "kind": "KubeadmConfigTemplate",
                            "name": "b1",
                        }
                    },
                }
            }
        },
    }
    target = desired_target(MACHINE_DEPLOYMENT, md)
    assert target.bootstrap == ("bootstrap.cluster.x-k8s.io", "KubeadmConfigTemplate", "b1")
    assert NEW.outdated_reasons(Target(NEW.version, NEW.infrastructure, target.bootstrap)) == [
        "* BootstrapConfig is not up-to-date"
    ]


def test_a_new_object_starts_fully_rolled_out() -> None:
    rollout = adopt(KUBEADM_CONTROL_PLANE, "v1beta2", kcp_object("v1beta2", "v1.30.2", "cp-v1-30"))
    assert rollout.done
    assert rollout.machines == [OLD] * 3


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_an_object_seen_mid_rollout_resumes_from_its_status(capi: str) -> None:
    obj = kcp_object(capi, "v1.31.0", "cp-v1-31")
    counter = "updatedReplicas" if capi == "v1beta1" else "upToDateReplicas"
    obj["status"] = {"observedGeneration": 1, "version": "v1.30.2", counter: 1}

    rollout = adopt(KUBEADM_CONTROL_PLANE, capi, obj)

    assert rollout.target == NEW
    assert rollout.up_to_date == 1
    assert {m.version for m in rollout.outdated} == {"v1.30.2"}


# -- rendering status -----------------------------------------------------------------------------


def mid_rollout(stage: Stage = Stage.PROVISIONING) -> Rollout:
    rollout = Rollout(target=NEW, desired=3, machines=[OLD, OLD, NEW], stage=stage)
    return rollout


def test_v1beta1_kcp_status_mid_rollout() -> None:
    obj = kcp_object("v1beta1", "v1.31.0", "cp-v1-31", labels={CLUSTER_LABEL: "c1"})

    status = render_status(KUBEADM_CONTROL_PLANE, "v1beta1", obj, mid_rollout(), Controls(), now=NOW)

    assert {
        k: status[k] for k in ("replicas", "updatedReplicas", "readyReplicas", "unavailableReplicas")
    } == {
        "replicas": 4,
        "updatedReplicas": 2,
        "readyReplicas": 3,
        "unavailableReplicas": 1,
    }
    assert status["version"] == "v1.30.2"  # the lowest machine version, until the last old machine is gone
    assert status["selector"] == "cluster.x-k8s.io/cluster-name=c1,cluster.x-k8s.io/control-plane"
    spec_up_to_date = cond(status["conditions"], "MachinesSpecUpToDate")
    assert spec_up_to_date["reason"] == "RollingUpdateInProgress"
    assert spec_up_to_date["severity"] == "Warning"
    assert spec_up_to_date["message"] == "Rolling 2 replicas with outdated spec (2 replicas up to date)"
    assert status["conditions"][0]["type"] == "Ready"
    assert status["conditions"][0]["status"] == "False"
    assert cond(status["v1beta2"]["conditions"], "RollingOut")["status"] == "True"
    assert status["v1beta2"]["upToDateReplicas"] == 2
    assert "versions" not in status  # not in the CAPI v1.10 schema


def test_v1beta2_md_status_when_a_replacement_fails() -> None:
    md = {"metadata": {"name": "md", "namespace": "ns", "generation": 4}, "spec": {"replicas": 3}}
    controls = Controls(fail_reason="instance create failed: no capacity")

    status = render_status(MACHINE_DEPLOYMENT, "v1beta2", md, mid_rollout(), controls, now=NOW)

    assert status["phase"] == "Failed"
    machines_ready = cond(status["conditions"], "MachinesReady")
    assert machines_ready["status"] == "False"
    assert machines_ready["reason"] == "InstanceCreateFailedNoCapacity"
    assert "no capacity" in machines_ready["message"]
    assert cond(status["conditions"], "Available")["status"] == "True"  # the old machines still serve
    rolling_out = cond(status["conditions"], "RollingOut")
    assert rolling_out["message"] == (
        "Rolling out 2 not up-to-date replicas\n"
        "* Version v1.30.2, v1.31.0 required\n"
        "* InfrastructureMachine is not up-to-date"
    )
    assert status["versions"] == [
        {"version": "v1.30.2", "replicas": 2},
        {"version": "v1.31.0", "replicas": 2},
    ]
    legacy = status["deprecated"]["v1beta1"]
    assert cond(legacy["conditions"], "MachineSetReady")["severity"] == "Error"
    counters = {k: legacy[k] for k in ("updatedReplicas", "availableReplicas", "unavailableReplicas")}
    assert counters == {"updatedReplicas": 2, "availableReplicas": 3, "unavailableReplicas": 1}
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_a_completed_rollout_reports_done_by_the_upstream_criteria(capi: str) -> None:
    obj = kcp_object(capi, "v1.31.0", "cp-v1-31")
    status = render_status(KUBEADM_CONTROL_PLANE, capi, obj, Rollout.completed(NEW, 3), Controls(), now=NOW)
    assert is_rolled_out(capi, KUBEADM_CONTROL_PLANE, {**obj, "status": status})
    status = render_status(KUBEADM_CONTROL_PLANE, capi, obj, mid_rollout(Stage.STEADY), Controls(), now=NOW)
    assert not is_rolled_out(capi, KUBEADM_CONTROL_PLANE, {**obj, "status": status})


def test_transition_times_move_only_when_a_condition_changes_and_foreign_fields_stay() -> None:
    obj = kcp_object("v1beta2", "v1.31.0", "cp-v1-31")
    rollout = mid_rollout(Stage.STEADY)
    first = render_status(KUBEADM_CONTROL_PLANE, "v1beta2", obj, rollout, Controls(), now=NOW)
    obj["status"] = {
        **first,
        "lastRemediation": {"machine": "m1", "retryCount": 1, "time": "2026-01-01T00:00:00Z"},
    }

    later = datetime(2026, 1, 2, 3, 9, 0, tzinfo=timezone.utc)
    same = render_status(KUBEADM_CONTROL_PLANE, "v1beta2", obj, rollout, Controls(), now=later)
    assert same == obj["status"]  # nothing to write

    rollout.stage = Stage.PROVISIONING
    moved = render_status(KUBEADM_CONTROL_PLANE, "v1beta2", obj, rollout, Controls(), now=later)
    assert cond(moved["conditions"], "ScalingDown")["lastTransitionTime"] == "2026-01-02T03:09:00Z"
    assert cond(moved["conditions"], "RollingOut")["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert moved["lastRemediation"] == obj["status"]["lastRemediation"]


def _upstream_reason_pattern() -> re.Pattern[str]:
    crd = capi_crd("v1beta2", "cluster.x-k8s.io_machinedeployments.yaml")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta2")
    reason = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]["items"]
    return re.compile(reason["properties"]["reason"]["pattern"])


REASON_PATTERN = _upstream_reason_pattern()


@given(st.text())
def test_any_fail_annotation_becomes_a_reason_the_upstream_schema_accepts(text: str) -> None:
    reason = condition_reason(text)
    assert REASON_PATTERN.fullmatch(reason)
    assert 1 <= len(reason) <= 256


# -- the watch loop -------------------------------------------------------------------------------


class _FakeWatchResponse:
    status = 200

    def __init__(self, *events: dict[str, Any]) -> None:
        self.body = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class _ExpiringApi:
    """Serves a list, then a watch that has expired (410 Gone), then a list and a working watch."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.lists = 0
        self.watched_from: list[str] = []

    def list_cluster_custom_object(self, group: str, version: str, plural: str, **kwargs: Any) -> Any:
        if not kwargs.get("watch"):
            self.lists += 1
            return {"metadata": {"resourceVersion": str(self.lists * 10)}, "items": []}
        self.watched_from.append(kwargs["resource_version"])
        if len(self.watched_from) == 1:
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
            return _FakeWatchResponse({"type": "ERROR", "object": gone})
        self.stop.set()
        added = {"metadata": {"name": "md", "uid": "u1", "resourceVersion": "21"}}
        return _FakeWatchResponse({"type": "ADDED", "object": added})


def test_an_expired_watch_relists_and_resumes_from_the_new_list() -> None:
    stop = threading.Event()
    api = _ExpiringApi(stop)
    events: queue.Queue[_Event] = queue.Queue()

    _Watcher(MACHINE_DEPLOYMENT, "v1beta2", api, events, stop).run()

    seen = []
    while not events.empty():
        event = events.get()
        seen.append((event.type, [o["metadata"]["uid"] for o in event.objects]))
    assert seen == [("LISTED", []), ("LISTED", []), ("ADDED", ["u1"])]
    assert api.watched_from == ["10", "20"]


def test_every_status_written_counts_the_machines_that_exist_then() -> None:
    api, now = MemoryApi(), [0.0]
    simulator = Simulator(api, "v1beta2", 0.3, clock=lambda: now[0])
    kcp = kcp_object("v1beta2", "v1.30.2", "cp-v1-30", uid="kcp-1", labels={CLUSTER_LABEL: "c1"})
    simulator.apply(_Event(KUBEADM_CONTROL_PLANE, "LISTED", [kcp]))
    simulator.reconcile_all()
    kcp = simulator.objects[("kubeadmcontrolplanes", "kcp-1")][1]
    upgraded = kcp_object("v1beta2", "v1.31.0", "cp-v1-31", uid="kcp-1", labels={CLUSTER_LABEL: "c1"})
    upgraded["metadata"].update(generation=2, resourceVersion=kcp["metadata"]["resourceVersion"])
    upgraded["status"] = kcp["status"]
    simulator.apply(_Event(KUBEADM_CONTROL_PLANE, "MODIFIED", [upgraded]))

    simulator.reconcile_all()
    assert (len(api.history), api.machines) == (1, {}), "nothing is written before Machines are listed"

    simulator.apply(_Event(MACHINE, "LISTED", []))
    for step in range(40):
        now[0] = step * 0.1
        simulator.reconcile_all()

    assert len(api.history) > 4
    for status, machines in api.history[1:]:
        running = [version for version, phase in machines if phase == "Running"]
        assert status["replicas"] == len(machines), (status, machines)
        assert status["readyReplicas"] == len(running), (status, machines)
        assert status["upToDateReplicas"] == sum(1 for version, _ in machines if version == "v1.31.0")
    assert api.history[-1][1] == [("v1.31.0", "Running")] * 3


def test_between_events_only_the_owners_they_concern_and_the_due_steps_are_reconciled() -> None:
    labels = {CLUSTER_LABEL: "c1"}
    api, now = MemoryApi(), [0.0]
    simulator = Simulator(api, "v1beta2", 0.3, clock=lambda: now[0])
    owners = {
        ns: kcp_object(
            "v1beta2", "v1.30.2", "cp-v1-30", name=f"{ns}-cp", namespace=ns, uid=f"k{ns}", labels=labels
        )
        for ns in ("a", "b")
    }
    simulator.apply(_Event(KUBEADM_CONTROL_PLANE, "LISTED", list(owners.values())))
    simulator.apply(_Event(MACHINE, "LISTED", []))
    reconciled: list[str] = []
    reconcile = simulator.reconcile

    def counted(key: tuple[str, str]) -> None:
        reconciled.append(key[1])
        reconcile(key)

    simulator.reconcile = counted  # type: ignore[method-assign]
    simulator.reconcile_pending()
    assert sorted(reconciled) == ["ka", "kb"], "a list concerns every owner"
    for step in range(1, 60):
        now[0] = step * 0.1
        simulator.reconcile_all()
    reconciled.clear()

    simulator.reconcile_pending()
    assert reconciled == [], "no event and no step due: nothing to reconcile"

    current = simulator.objects[("kubeadmcontrolplanes", "kb")][1]
    upgraded = kcp_object(
        "v1beta2", "v1.31.0", "cp-v1-31", name="b-cp", namespace="b", uid="kb", labels=labels
    )
    upgraded["metadata"].update(generation=2, resourceVersion=current["metadata"]["resourceVersion"])
    upgraded["status"] = current["status"]
    simulator.apply(_Event(KUBEADM_CONTROL_PLANE, "MODIFIED", [upgraded]))
    for step in range(60, 120):
        now[0] = step * 0.1
        simulator.reconcile_pending()
    assert set(reconciled) == {"kb"}, "the change and its steps concern b alone"
    assert api.states().count(("v1.31.0", "Running")) == 3, "b rolled out by its due steps alone"

    reconciled.clear()
    machine = {
        "metadata": {"name": "m", "namespace": "a", "uid": "m1", "resourceVersion": "1", "labels": labels},
        "spec": {"clusterName": "c1", "version": "v1.30.2"},
    }
    simulator.apply(_Event(MACHINE, "MODIFIED", [machine]))
    simulator.reconcile_pending()
    assert reconciled == ["ka"], "a Machine's change concerns the owners of its namespace"


# -- against the real test bed --------------------------------------------------------------------


def is_rolled_out(capi: str, resource: Resource, obj: dict[str, Any]) -> bool:
    """CAPI's own done criteria (research: KCP 6.4, MD 7.4), read the way the plugin would read them."""
    spec, status = obj["spec"], obj.get("status") or {}
    desired = spec.get("replicas", 1)
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    up_to_date = status.get("updatedReplicas" if capi == "v1beta1" else "upToDateReplicas")
    done = (
        status.get("observedGeneration") == obj["metadata"]["generation"]
        and status.get("replicas") == up_to_date == status.get("readyReplicas") == desired
        and conditions.get("Available") == "True"
    )
    if capi == "v1beta1":
        done = done and (conditions.get("MachinesSpecUpToDate", "True") == "True")
    else:
        done = done and conditions.get("RollingOut") == "False"
        version = spec["version"] if resource.is_control_plane else spec["template"]["spec"]["version"]
        done = done and [v["version"] for v in status.get("versions", [])] == [version]
    if resource.is_control_plane:
        done = done and status.get("version") == spec["version"]
    return done


class Objects:
    """Cluster-API objects of one profile in one namespace, shaped like the upstream CAPC templates."""

    def __init__(self, bed: TestBed, namespace: str) -> None:
        self.capi, self.namespace = bed.capi, namespace
        self.api = client.CustomObjectsApi(bed.api_client())

    def ref(self, group: str, version: str, kind: str, name: str) -> dict[str, str]:
        if self.capi == "v1beta1":
            return {
                "apiVersion": f"{group}/{version}",
                "kind": kind,
                "name": name,
                "namespace": self.namespace,
            }
        return {"apiGroup": group, "kind": kind, "name": name}

    def infra(self, name: str) -> dict[str, str]:
        return self.ref(INFRA_GROUP, "v1beta3", "CloudStackMachineTemplate", name)

    def create(self, group: str, version: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["namespace"] = self.namespace
        return dict(self.api.create_namespaced_custom_object(group, version, self.namespace, plural, body))

    def machine_template(self, name: str) -> None:
        self.create(INFRA_GROUP, "v1beta3", "cloudstackmachinetemplates", {
            "apiVersion": f"{INFRA_GROUP}/v1beta3",
            "kind": "CloudStackMachineTemplate",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"offering": {"name": "Medium"}, "template": {"name": name}}}},
        })  # fmt: skip

    def cluster(self, name: str) -> None:
        self.create("cluster.x-k8s.io", self.capi, "clusters", {
            "apiVersion": f"cluster.x-k8s.io/{self.capi}",
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {
                "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]}},
                "infrastructureRef": self.ref(INFRA_GROUP, "v1beta3", "CloudStackCluster", name),
                "controlPlaneRef": self.ref(
                    "controlplane.cluster.x-k8s.io", self.capi, "KubeadmControlPlane", f"{name}-control-plane"
                ),
            },
        })  # fmt: skip

    def kubeadm_control_plane(
        self, cluster: str, version: str, template: str, replicas: int
    ) -> dict[str, Any]:
        machine_template: dict[str, Any] = {"infrastructureRef": self.infra(template)}
        if self.capi == "v1beta2":
            machine_template = {"spec": machine_template}
        return self.create("controlplane.cluster.x-k8s.io", self.capi, "kubeadmcontrolplanes", {
            "apiVersion": f"controlplane.cluster.x-k8s.io/{self.capi}",
            "kind": "KubeadmControlPlane",
            "metadata": {"name": f"{cluster}-control-plane", "labels": {CLUSTER_LABEL: cluster}},
            "spec": {
                "replicas": replicas,
                "version": version,
                "machineTemplate": machine_template,
                "kubeadmConfigSpec": {"preKubeadmCommands": ["swapoff -a"]},
            },
        })  # fmt: skip

    def machine_deployment(self, cluster: str, version: str, template: str, replicas: int) -> dict[str, Any]:
        self.create("bootstrap.cluster.x-k8s.io", self.capi, "kubeadmconfigtemplates", {
            "apiVersion": f"bootstrap.cluster.x-k8s.io/{self.capi}",
            "kind": "KubeadmConfigTemplate",
            "metadata": {"name": f"{cluster}-md-0"},
            "spec": {"template": {"spec": {"preKubeadmCommands": ["swapoff -a"]}}},
        })  # fmt: skip
        labels = {
            CLUSTER_LABEL: cluster,
            "cluster.x-k8s.io/deployment-name": f"{cluster}-md-0",
        }
        bootstrap = self.ref(
            "bootstrap.cluster.x-k8s.io", self.capi, "KubeadmConfigTemplate", f"{cluster}-md-0"
        )
        return self.create("cluster.x-k8s.io", self.capi, "machinedeployments", {
            "apiVersion": f"cluster.x-k8s.io/{self.capi}",
            "kind": "MachineDeployment",
            "metadata": {"name": f"{cluster}-md-0", "labels": {CLUSTER_LABEL: cluster}},
            "spec": {
                "clusterName": cluster,
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "clusterName": cluster,
                        "version": version,
                        "bootstrap": {"configRef": bootstrap},
                        "infrastructureRef": self.infra(template),
                    },
                },
            },
        })  # fmt: skip

    def get(self, resource: Resource, name: str) -> dict[str, Any]:
        return dict(
            self.api.get_namespaced_custom_object(
                resource.group, self.capi, self.namespace, resource.plural, name
            )
        )

    def patch(self, resource: Resource, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.api.patch_namespaced_custom_object(
                resource.group, self.capi, self.namespace, resource.plural, name, body
            )
        )

    def upgrade(self, resource: Resource, name: str, version: str, template: str) -> dict[str, Any]:
        """Change version and infrastructure template in one write, as the CAPI book asks."""
        if resource.is_control_plane:
            ref = {"infrastructureRef": self.infra(template)}
            spec = {"version": version, "machineTemplate": {"spec": ref} if self.capi == "v1beta2" else ref}
        else:
            spec = {"template": {"spec": {"version": version, "infrastructureRef": self.infra(template)}}}
        return self.patch(resource, name, {"spec": spec})

    def statuses_until(
        self,
        resource: Resource,
        name: str,
        since: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 30,
    ) -> list[dict[str, Any]]:
        """Every version of the object written after resourceVersion `since`, up to the first `done` one."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        w = watch.Watch()  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            for event in w.stream(
                self.api.list_namespaced_custom_object,
                resource.group, self.capi, self.namespace, resource.plural,
                field_selector=f"metadata.name={name}", resource_version=since,
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            ):  # fmt: skip
                obj = event["raw_object"]
                since = obj["metadata"]["resourceVersion"]
                seen.append(obj)
                if done(obj):
                    w.stop()
                    return seen
        raise AssertionError(f"{resource.kind} {name} not done after {timeout}s; last status: {seen[-1:]}")


def wait_for(probe: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_for_object(
    objects: Objects, resource: Resource, name: str, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = objects.get(resource, name)
        return obj if predicate(obj) else None

    return dict(wait_for(probe))


def machines_of(objects: Objects, resource: Resource, name: str) -> list[dict[str, Any]]:
    """The owner's Machines, found by the label the plugin lists them by."""
    label = "control-plane-name" if resource.is_control_plane else "deployment-name"
    listing = objects.api.list_namespaced_custom_object(
        "cluster.x-k8s.io", objects.capi, objects.namespace, "machines",
        label_selector=f"cluster.x-k8s.io/{label}={name}",
    )  # fmt: skip
    return list(listing["items"])


def cloudstack_machines(objects: Objects) -> list[dict[str, Any]]:
    listing = objects.api.list_namespaced_custom_object(
        INFRA_GROUP, "v1beta3", objects.namespace, "cloudstackmachines"
    )
    return list(listing["items"])


def machine_states(objects: Objects, resource: Resource, name: str) -> list[tuple[str, str]]:
    return sorted((m["spec"]["version"], phase_of(m)) for m in machines_of(objects, resource, name))


def simulator_problems(bed: TestBed) -> list[str]:
    log = Path(bed.dir) / "rollout.log"
    return [line for line in log.read_text().splitlines() if " ERROR " in line or "Traceback" in line]


def up_to_date_of(capi: str, obj: dict[str, Any]) -> int:
    return int(obj.get("status", {}).get("updatedReplicas" if capi == "v1beta1" else "upToDateReplicas", -1))


def test_the_simulator_drives_a_kcp_and_an_md_to_completion(testenv: TestBed, namespace: str) -> None:
    objects = Objects(testenv, namespace)
    for template in ("c1-cp-v1-30", "c1-cp-v1-31", "c1-md-v1-30", "c1-md-v1-31"):
        objects.machine_template(template)
    objects.cluster("c1")
    kcp = objects.kubeadm_control_plane("c1", "v1.30.2", "c1-cp-v1-30", replicas=3)
    md = objects.machine_deployment("c1", "v1.30.2", "c1-md-v1-30", replicas=2)
    kcp_name, md_name = kcp["metadata"]["name"], md["metadata"]["name"]

    # New objects start fully rolled out, with the Machines the test gave them (none here).
    wait_for(
        lambda: is_rolled_out(
            testenv.capi, KUBEADM_CONTROL_PLANE, objects.get(KUBEADM_CONTROL_PLANE, kcp_name)
        )
    )
    wait_for(
        lambda: is_rolled_out(testenv.capi, MACHINE_DEPLOYMENT, objects.get(MACHINE_DEPLOYMENT, md_name))
    )

    for resource, name, template, replicas in (
        (KUBEADM_CONTROL_PLANE, kcp_name, "c1-cp-v1-31", 3),
        (MACHINE_DEPLOYMENT, md_name, "c1-md-v1-31", 2),
    ):
        bumped = objects.upgrade(resource, name, "v1.31.0", template)
        history = objects.statuses_until(
            resource, name, bumped["metadata"]["resourceVersion"],
            lambda obj, r=resource: is_rolled_out(testenv.capi, r, obj),
        )  # fmt: skip

        counts = [up_to_date_of(testenv.capi, o) for o in history if "status" in o]
        assert counts == sorted(counts), "up-to-date replicas never go backwards"
        assert set(range(replicas + 1)) <= set(counts), "every replacement is reported"
        assert max(o["status"]["replicas"] for o in history) == replicas + 1, "one surge machine at a time"
        final = history[-1]
        assert final["status"]["observedGeneration"] == bumped["metadata"]["generation"]
        if resource.is_control_plane:
            assert final["status"]["version"] == "v1.31.0"
            assert {o["status"]["version"] for o in history[:-1]} == {"v1.30.2"}
        # The old Machines are gone by the time the status says done; the new ones run the new version.
        assert machine_states(objects, resource, name) == [("v1.31.0", "Running")] * replicas
        for machine in machines_of(objects, resource, name):
            assert machine["metadata"]["labels"][CLUSTER_LABEL] == "c1"
            assert machine["metadata"]["ownerReferences"][0]["uid"] == final["metadata"]["uid"]
            assert machine["spec"]["infrastructureRef"]["name"] == machine["metadata"]["name"]
        # Each Machine has its CloudStackMachine, cloned from the template it was built from as CAPI
        # clones it; those of the deleted Machines are gone with them.
        infra = {m["metadata"]["name"]: m for m in cloudstack_machines(objects)}
        for machine in machines_of(objects, resource, name):
            csm = infra[machine["spec"]["infrastructureRef"]["name"]]
            assert csm["metadata"]["annotations"] == {
                "cluster.x-k8s.io/cloned-from-name": template,
                "cluster.x-k8s.io/cloned-from-groupkind": "CloudStackMachineTemplate." + INFRA_GROUP,
            }
            assert csm["spec"]["template"] == {"name": template}
            assert csm["metadata"]["labels"][CLUSTER_LABEL] == "c1"
            (owner,) = csm["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["uid"]) == ("Machine", machine["metadata"]["uid"])
    machines = [m for r, n in ((KUBEADM_CONTROL_PLANE, kcp_name), (MACHINE_DEPLOYMENT, md_name))
                for m in machines_of(objects, r, n)]  # fmt: skip
    assert wait_for(lambda: len(cloudstack_machines(objects)) == len(machines))

    # Once done the simulator stays quiet: nothing it writes is pruned or rejected by the schema.
    settled = objects.get(KUBEADM_CONTROL_PLANE, kcp_name)["metadata"]["resourceVersion"]
    time.sleep(1.0)
    assert objects.get(KUBEADM_CONTROL_PLANE, kcp_name)["metadata"]["resourceVersion"] == settled
    assert simulator_problems(testenv) == []


def test_a_stall_annotation_stops_a_rollout_and_removing_it_resumes(testenv: TestBed, namespace: str) -> None:
    objects = Objects(testenv, namespace)
    objects.machine_template("c2-cp-v1-30")
    objects.machine_template("c2-cp-v1-31")
    kcp = objects.kubeadm_control_plane("c2", "v1.30.2", "c2-cp-v1-30", replicas=3)
    name = kcp["metadata"]["name"]
    wait_for(
        lambda: is_rolled_out(testenv.capi, KUBEADM_CONTROL_PLANE, objects.get(KUBEADM_CONTROL_PLANE, name))
    )
    objects.patch(KUBEADM_CONTROL_PLANE, name, {"metadata": {"annotations": {STALL_ANNOTATION: "1"}}})

    objects.upgrade(KUBEADM_CONTROL_PLANE, name, "v1.31.0", "c2-cp-v1-31")
    stalled = wait_for_object(
        objects,
        KUBEADM_CONTROL_PLANE,
        name,
        lambda o: (up_to_date_of(testenv.capi, o), o["status"]["replicas"]) == (1, 3),
    )

    time.sleep(1.5)  # several machines' worth of time at the bed's speed
    still = objects.get(KUBEADM_CONTROL_PLANE, name)
    assert still["metadata"]["resourceVersion"] == stalled["metadata"]["resourceVersion"]
    assert machine_states(objects, KUBEADM_CONTROL_PLANE, name) == [
        ("v1.30.2", "Running"), ("v1.30.2", "Running"), ("v1.31.0", "Running"),
    ]  # fmt: skip
    assert still["status"]["version"] == "v1.30.2"
    conditions = {c["type"]: c for c in still["status"]["conditions"]}
    if testenv.capi == "v1beta2":
        assert conditions["RollingOut"]["status"] == "True"
        assert conditions["RollingOut"]["message"].startswith("Rolling out 2 not up-to-date replicas")
    else:
        assert conditions["MachinesSpecUpToDate"]["reason"] == "RollingUpdateInProgress"

    objects.patch(KUBEADM_CONTROL_PLANE, name, {"metadata": {"annotations": {STALL_ANNOTATION: None}}})
    wait_for(
        lambda: is_rolled_out(testenv.capi, KUBEADM_CONTROL_PLANE, objects.get(KUBEADM_CONTROL_PLANE, name))
    )
    assert machine_states(objects, KUBEADM_CONTROL_PLANE, name) == [("v1.31.0", "Running")] * 3


def test_a_fail_annotation_reports_the_failure_on_the_object(testenv: TestBed, namespace: str) -> None:
    objects = Objects(testenv, namespace)
    objects.machine_template("c3-md-v1-30")
    md = objects.machine_deployment("c3", "v1.30.2", "c3-md-v1-30", replicas=2)
    name = md["metadata"]["name"]
    wait_for(lambda: is_rolled_out(testenv.capi, MACHINE_DEPLOYMENT, objects.get(MACHINE_DEPLOYMENT, name)))
    objects.patch(
        MACHINE_DEPLOYMENT, name, {"metadata": {"annotations": {FAIL_ANNOTATION: "InstanceCreateFailed"}}}
    )

    objects.patch(MACHINE_DEPLOYMENT, name, {"spec": {"template": {"spec": {"version": "v1.31.0"}}}})
    failed = wait_for_object(
        objects, MACHINE_DEPLOYMENT, name, lambda o: o["status"].get("phase") == "Failed"
    )

    status = failed["status"]
    assert (status["replicas"], status["readyReplicas"], up_to_date_of(testenv.capi, failed)) == (3, 2, 1)
    current = status["v1beta2"]["conditions"] if testenv.capi == "v1beta1" else status["conditions"]
    assert cond(current, "MachinesReady")["reason"] == "InstanceCreateFailed"
    legacy = (
        status["conditions"] if testenv.capi == "v1beta1" else status["deprecated"]["v1beta1"]["conditions"]
    )
    assert cond(legacy, "Ready")["severity"] == "Error"
    assert machine_states(objects, MACHINE_DEPLOYMENT, name) == [
        ("v1.30.2", "Running"), ("v1.30.2", "Running"), ("v1.31.0", "Provisioning"),
    ]  # fmt: skip

    objects.patch(MACHINE_DEPLOYMENT, name, {"metadata": {"annotations": {FAIL_ANNOTATION: None}}})
    wait_for(lambda: is_rolled_out(testenv.capi, MACHINE_DEPLOYMENT, objects.get(MACHINE_DEPLOYMENT, name)))
    assert machine_states(objects, MACHINE_DEPLOYMENT, name) == [("v1.31.0", "Running")] * 2
    assert simulator_problems(testenv) == []


def test_scaling_is_reported_without_a_rollout(testenv: TestBed, namespace: str) -> None:
    objects = Objects(testenv, namespace)
    objects.machine_template("c4-cp")
    kcp = objects.kubeadm_control_plane("c4", "v1.30.2", "c4-cp", replicas=1)
    name = kcp["metadata"]["name"]
    wait_for(
        lambda: is_rolled_out(testenv.capi, KUBEADM_CONTROL_PLANE, objects.get(KUBEADM_CONTROL_PLANE, name))
    )

    scaled = objects.patch(KUBEADM_CONTROL_PLANE, name, {"spec": {"replicas": 3}})
    history = objects.statuses_until(
        KUBEADM_CONTROL_PLANE, name, scaled["metadata"]["resourceVersion"],
        lambda obj: is_rolled_out(testenv.capi, KUBEADM_CONTROL_PLANE, obj),
    )  # fmt: skip

    assert len(history) == 1
    assert history[0]["status"]["replicas"] == 3
    assert history[0]["spec"]["replicas"] == 3
