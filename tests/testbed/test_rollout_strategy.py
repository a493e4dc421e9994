"""The rollout simulator honours each object's rollout strategy as CAPI does, in both API profiles.

RollingUpdate stays within maxSurge above and maxUnavailable below the desired count (int or percentage,
surge rounded up, unavailable rounded down); OnDelete creates nothing until someone deletes an old
Machine, and then exactly one replacement per deleted Machine. Driven through the Simulator with an
in-memory apiserver and a fake clock, so every intermediate state is seen.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.memory_apiserver import MemoryApi
from tests.testenv.rollout import Simulator, _Event
from tests.testenv.rollout_machines import MACHINE
from tests.testenv.rollout_model import Strategy, resolve_fencepost
from tests.testenv.rollout_status import KUBEADM_CONTROL_PLANE, MACHINE_DEPLOYMENT, Resource, desired_strategy

INFRA_GROUP = "infrastructure.cluster.x-k8s.io"
PROFILES = ["v1beta1", "v1beta2"]


def md_object(
    capi: str, version: str, template: str, replicas: int, strategy: dict[str, Any] | None
) -> dict[str, Any]:
    if capi == "v1beta1":
        ref: dict[str, Any] = {"apiVersion": f"{INFRA_GROUP}/v1beta3", "kind": "CloudStackMachineTemplate"}
    else:
        ref = {"apiGroup": INFRA_GROUP, "kind": "CloudStackMachineTemplate"}
    spec: dict[str, Any] = {
        "clusterName": "c1",
        "replicas": replicas,
        "selector": {"matchLabels": {"cluster.x-k8s.io/deployment-name": "md"}},
        "template": {
            "spec": {"clusterName": "c1", "version": version, "infrastructureRef": {**ref, "name": template}}
        },
    }
    if strategy is not None:
        if capi == "v1beta1":
            spec["strategy"] = strategy
        else:
            spec["rollout"] = {"strategy": strategy}
    return {
        "metadata": {"name": "md", "namespace": "ns", "uid": "md-1", "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    }


def kcp_object(capi: str, version: str, template: str, max_surge: int) -> dict[str, Any]:
    if capi == "v1beta1":
        ref: dict[str, Any] = {"apiVersion": f"{INFRA_GROUP}/v1beta3", "kind": "CloudStackMachineTemplate"}
        machine_template: dict[str, Any] = {"infrastructureRef": {**ref, "name": template}}
        rollout = {"rolloutStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge}}}
    else:
        ref = {"apiGroup": INFRA_GROUP, "kind": "CloudStackMachineTemplate"}
        machine_template = {"spec": {"infrastructureRef": {**ref, "name": template}}}
        rollout = {
            "rollout": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge}}}
        }
    return {
        "metadata": {
            "name": "cp", "namespace": "ns", "uid": "cp-1", "generation": 1, "resourceVersion": "1",
            "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
        },
        "spec": {"replicas": 3, "version": version, "machineTemplate": machine_template, **rollout},
    }  # fmt: skip


class Bed:
    """One owner under the simulator: start it rolled out, change its spec, step the fake clock."""

    def __init__(self, capi: str, resource: Resource, owner: dict[str, Any]) -> None:
        self.api, self.now, self.resource = MemoryApi(), [0.0], resource
        self.simulator = Simulator(self.api, capi, 0.3, clock=lambda: self.now[0])
        self.key, self.start = (resource.plural, owner["metadata"]["uid"]), 0
        self.simulator.apply(_Event(resource, "LISTED", [owner]))
        self.simulator.apply(_Event(MACHINE, "LISTED", []))
        self.simulator.reconcile_all()

    def change(self, owner: dict[str, Any]) -> None:
        current = self.simulator.objects[self.key][1]
        owner["metadata"].update(generation=2, resourceVersion=current["metadata"]["resourceVersion"])
        owner["status"] = current.get("status")
        self.simulator.apply(_Event(self.resource, "MODIFIED", [owner]))
        self.start = len(self.api.history)

    @property
    def history(self) -> list[tuple[dict[str, Any], list[tuple[str, str]]]]:
        """(status, Machines) at each status write since the spec changed."""
        return self.api.history[self.start :]

    def run(self, seconds: float) -> None:
        start = self.now[0]
        for step in range(int(seconds / 0.05)):
            self.now[0] = start + step * 0.05
            self.simulator.reconcile_all()

    def delete_machine(self, version: str) -> None:
        name = next(n for n, m in sorted(self.api.machines.items()) if m["spec"]["version"] == version)
        machine = self.api.machines.pop(name)
        self.simulator.apply(_Event(MACHINE, "DELETED", [machine]))


def counter(capi: str) -> str:
    return "updatedReplicas" if capi == "v1beta1" else "upToDateReplicas"


# -- resolving the strategy --------------------------------------------------------------------------


def test_percentages_round_surge_up_and_unavailable_down() -> None:
    assert resolve_fencepost("25%", 10, round_up=True, default=1) == 3
    assert resolve_fencepost("25%", 10, round_up=False, default=0) == 2
    assert resolve_fencepost(None, 10, round_up=True, default=1) == 1
    assert resolve_fencepost(2, 10, round_up=False, default=0) == 2


@pytest.mark.parametrize("capi", PROFILES)
def test_strategy_is_read_from_the_profile_field_with_capi_defaults(capi: str) -> None:
    assert desired_strategy(MACHINE_DEPLOYMENT, capi, md_object(capi, "v1.30.2", "a", 4, None)) == Strategy()
    surge = md_object(
        capi, "v1.30.2", "a", 4, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%"}}
    )
    assert desired_strategy(MACHINE_DEPLOYMENT, capi, surge) == Strategy(max_surge=2, max_unavailable=0)
    zero = md_object(capi, "v1.30.2", "a", 4, {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    assert desired_strategy(MACHINE_DEPLOYMENT, capi, zero) == Strategy(max_surge=0, max_unavailable=1)
    on_delete = md_object(capi, "v1.30.2", "a", 4, {"type": "OnDelete"})
    assert desired_strategy(MACHINE_DEPLOYMENT, capi, on_delete).on_delete
    kcp = kcp_object(capi, "v1.30.2", "a", 0)
    assert desired_strategy(KUBEADM_CONTROL_PLANE, capi, kcp) == Strategy(max_surge=0, max_unavailable=1)


# -- RollingUpdate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("capi", PROFILES)
def test_max_surge_2_never_exceeds_replicas_plus_2_and_keeps_all_available(capi: str) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}
    bed = Bed(capi, MACHINE_DEPLOYMENT, md_object(capi, "v1.30.2", "a", 5, strategy))
    bed.change(md_object(capi, "v1.31.0", "b", 5, strategy))
    bed.run(6)

    assert bed.api.states() == [("v1.31.0", "Running")] * 5
    sizes = [len(machines) for _, machines in bed.history]
    assert max(sizes) == 7, "two surge machines at a time, never more"
    for status, machines in bed.history:
        running = sum(1 for _, phase in machines if phase == "Running")
        assert running >= 5, machines
        assert status["replicas"] == len(machines) and status["readyReplicas"] == running
        assert status[counter(capi)] == sum(1 for v, _ in machines if v == "v1.31.0")


@pytest.mark.parametrize("capi", PROFILES)
def test_max_unavailable_lets_old_machines_go_first_but_no_more(capi: str) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 2}}
    bed = Bed(capi, MACHINE_DEPLOYMENT, md_object(capi, "v1.30.2", "a", 4, strategy))
    bed.change(md_object(capi, "v1.31.0", "b", 4, strategy))
    bed.run(6)

    assert bed.api.states() == [("v1.31.0", "Running")] * 4
    running = [sum(1 for _, p in machines if p == "Running") for _, machines in bed.history]
    assert min(running) == 2, "two may be unavailable at once, never three"
    assert max(len(machines) for _, machines in bed.history) == 4, "no surge"
    legacy = [s if capi == "v1beta1" else s["deprecated"]["v1beta1"] for s, _ in bed.history]
    assert max(s["unavailableReplicas"] for s in legacy) == 2


@pytest.mark.parametrize("capi", PROFILES)
def test_a_kcp_with_max_surge_0_deletes_before_it_creates(capi: str) -> None:
    bed = Bed(capi, KUBEADM_CONTROL_PLANE, kcp_object(capi, "v1.30.2", "a", 0))
    bed.change(kcp_object(capi, "v1.31.0", "b", 0))
    bed.run(6)

    assert bed.api.states() == [("v1.31.0", "Running")] * 3
    assert max(len(machines) for _, machines in bed.history) == 3, "never a fourth machine"
    assert min(sum(1 for _, p in m if p == "Running") for _, m in bed.history) == 2


# -- OnDelete ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capi", PROFILES)
def test_on_delete_waits_for_a_deleted_machine_and_replaces_exactly_that_one(capi: str) -> None:
    strategy = {"type": "OnDelete"}
    bed = Bed(capi, MACHINE_DEPLOYMENT, md_object(capi, "v1.30.2", "a", 3, strategy))
    bed.change(md_object(capi, "v1.31.0", "b", 3, strategy))
    bed.run(3)

    assert bed.api.states() == [("v1.30.2", "Running")] * 3, "no new machine without a deletion"
    status = bed.history[-1][0]
    assert status[counter(capi)] == 0 and status["readyReplicas"] == 3
    conditions = status["conditions"] if capi == "v1beta2" else status["v1beta2"]["conditions"]
    up_to_date = next(c for c in conditions if c["type"] == "MachinesUpToDate")
    assert (up_to_date["status"], up_to_date["reason"]) == ("False", "NotUpToDate")
    assert "3 Machines are not up-to-date" in up_to_date["message"]

    bed.delete_machine("v1.30.2")
    bed.run(3)

    assert bed.api.states() == [("v1.30.2", "Running")] * 2 + [("v1.31.0", "Running")]
    seen = {tuple(machines) for _, machines in bed.history}
    assert tuple([("v1.30.2", "Running")] * 2 + [("v1.31.0", "Provisioning")]) in seen
    assert max(len(machines) for _, machines in bed.history) == 3, "one replacement, no surge"
    assert bed.history[-1][0][counter(capi)] == 1


@pytest.mark.parametrize("capi", PROFILES)
def test_on_delete_replaces_each_of_two_deleted_machines_once(capi: str) -> None:
    strategy = {"type": "OnDelete"}
    bed = Bed(capi, MACHINE_DEPLOYMENT, md_object(capi, "v1.30.2", "a", 3, strategy))
    bed.change(md_object(capi, "v1.31.0", "b", 3, strategy))
    bed.run(1)
    bed.delete_machine("v1.30.2")
    bed.delete_machine("v1.30.2")
    bed.run(3)

    assert bed.api.states() == [("v1.30.2", "Running")] + [("v1.31.0", "Running")] * 2
