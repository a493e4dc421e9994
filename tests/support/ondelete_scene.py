"""A settled cluster whose chosen MachineDeployments have the OnDelete strategy, in either API shape,
shared by the OnDelete planner tests and the rollback plan's tests."""

from __future__ import annotations

from typing import Any

from tests.support.fixtures_capc import render_cluster, with_settled_status
from tests.support.planner_scenes import TWO_ZONES


def set_strategy(obj: dict[str, Any], strategy: dict[str, Any]) -> None:
    if obj["apiVersion"].endswith("/v1beta2"):
        obj["spec"]["rollout"] = {"strategy": strategy}
    else:
        obj["spec"]["strategy"] = strategy


def running(machine: dict[str, Any], *, node_ready: bool | None = True) -> None:
    """Status of a Machine with a Node, in its own shape; `node_ready` None reports no condition."""
    name = machine["metadata"]["name"]
    v1beta2 = machine["apiVersion"].endswith("/v1beta2")
    status: dict[str, Any] = {
        "phase": "Running",
        "nodeRef": {"name": name} if v1beta2 else {"kind": "Node", "name": name},
    }
    if node_ready is not None:
        condition = {
            "type": "NodeReady",
            "status": "True" if node_ready else "False",
            "reason": "NodeReady" if node_ready else "NodeNotReady",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        if v1beta2:
            status["conditions"] = [condition]
        else:
            status["v1beta2"] = {"conditions": [condition]}
    machine["status"] = status


def scene(capi: str, *, on_delete: tuple[str, ...] = ("c1-md-0",), **strategy: Any) -> list[dict[str, Any]]:
    """A settled two-zone cluster with its Machines Running, `on_delete` deployments OnDelete."""
    objects = with_settled_status(
        render_cluster("c1", "ns", capi=capi, md_count=2, zones=TWO_ZONES, with_machines=True)
    )
    for index, obj in enumerate(objects):
        obj["metadata"].setdefault("uid", f"uid-{index}")
        obj["metadata"].setdefault("resourceVersion", str(100 + index))
        if obj["kind"] == "Machine":
            running(obj)
        if obj["kind"] == "MachineDeployment" and obj["metadata"]["name"] in on_delete:
            set_strategy(obj, {"type": "OnDelete", **strategy})
    return objects
