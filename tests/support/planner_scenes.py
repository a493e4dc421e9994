"""Scenes for planner tests: realistic cluster objects, CloudStack template listings, and a model of what
applying a plan step does to the objects (enough to re-plan from the result, as a re-run would).

No servers: the objects come from `tests.support.fixtures_capc` and are changed in memory.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.model import CloudStackTemplateRow, ClusterInventory, ZoneTemplates, thaw
from kubectl_capc.domain.plan import (
    CreateMachineTemplate,
    EnsureImage,
    PatchObject,
    Step,
    UpgradePlan,
    WaitRollout,
)
from kubectl_capc.domain.planner import PlanRequest, plan_upgrade
from kubectl_capc.domain.versions import parse_target
from tests.support.fixtures_capc import Zone, raw_objects, render_cluster, settled_status, with_settled_status

TWO_ZONES = (Zone("zone-a", "net-a"), Zone("zone-b", "net-b"))
_uids = itertools.count(1)


def cluster(
    capi: str = "v1beta2",
    *,
    version: str = "v1.28.5",
    md_count: int = 2,
    zones: Sequence[Zone] = TWO_ZONES,
    worker_versions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """A settled cluster `c1` in namespace `ns`, every object with uid and resourceVersion."""
    objects = with_settled_status(
        render_cluster("c1", "ns", capi=capi, version=version, md_count=md_count, zones=zones)
    )
    for index, version_ in enumerate(worker_versions or ()):
        md = named(objects, "MachineDeployment", f"c1-md-{index}")
        md["spec"]["template"]["spec"]["version"] = version_
        named(objects, "CloudStackMachineTemplate", f"c1-md-{index}")["spec"]["template"]["spec"]["template"][
            "name"
        ] = f"ubuntu-2204-kube-{version_}"
        md["status"] = settled_status(md)
    for obj in objects:
        obj["metadata"].setdefault("uid", f"uid-{next(_uids)}")
        obj["metadata"].setdefault("resourceVersion", str(next(_uids)))
    return objects


def named(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def of_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def inventory(objects: Sequence[dict[str, Any]]) -> ClusterInventory:
    capi = (
        "v1beta2"
        if of_kind(objects, "KubeadmControlPlane")[0]["apiVersion"].endswith("v1beta2")
        else "v1beta1"
    )
    (inv,) = build_inventories(raw_objects(objects), capi)  # type: ignore[arg-type]
    return inv


def listing(
    images: Iterable[str],
    zones: Sequence[Zone] = TWO_ZONES,
    *,
    ready: bool = True,
    status: str = "Download Complete",
) -> dict[str, tuple[CloudStackTemplateRow, ...]]:
    """What listTemplates (executable) returns per failure domain: every image once in every zone."""
    names = list(images)
    return {
        zone.fd_name: tuple(
            CloudStackTemplateRow(f"{name}@{zone.name}", name, f"id-{zone.name}", zone.name, ready, status)
            for name in names
        )
        for zone in zones
    }


def images(*versions: str, os: str = "ubuntu-2204") -> list[str]:
    return [f"{os}-kube-{v}" for v in versions]


def plan(
    objects: Sequence[dict[str, Any]], to: str, templates: ZoneTemplates | None, **request: Any
) -> UpgradePlan:
    return plan_upgrade(inventory(objects), PlanRequest(parse_target(to), to, **request), templates)


# -- applying steps, as the API server and CAPI would see them -----------------------------------------


def execute(objects: list[dict[str, Any]], step: Step) -> None:
    """Change `objects` the way executing `step` changes the management cluster (rollouts finish on wait)."""
    if isinstance(step, EnsureImage):
        return
    if isinstance(step, CreateMachineTemplate):
        if step.exists:
            return
        existing = [
            o for o in of_kind(objects, "CloudStackMachineTemplate") if o["metadata"]["name"] == step.name
        ]
        assert not existing, f"{step.name} would be created twice"
        created = thaw(step.manifest)
        created["metadata"].update(uid=f"uid-{next(_uids)}", resourceVersion=str(next(_uids)))
        objects.append(created)
        return
    if isinstance(step, PatchObject):
        obj = named(objects, step.kind, step.name)
        assert obj["metadata"]["resourceVersion"] == step.resource_version, "patch guard would fail"
        set_version_and_template(obj, step.version_to, step.template_to)
        return
    if isinstance(step, WaitRollout):
        for name in step.names:
            settle(named(objects, step.kind, name))
        return
    raise AssertionError(f"unknown step {step!r}")


def set_version_and_template(obj: dict[str, Any], version: str, template: str) -> None:
    """A spec change: generation moves on, status is stale until the controller catches up."""
    if obj["kind"] == "KubeadmControlPlane":
        obj["spec"]["version"] = version
        machine_template = obj["spec"]["machineTemplate"]
        (machine_template.get("spec") or machine_template)["infrastructureRef"]["name"] = template
    else:
        machine_spec = obj["spec"]["template"]["spec"]
        machine_spec["version"] = version
        machine_spec["infrastructureRef"]["name"] = template
    obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
    obj["metadata"]["resourceVersion"] = str(next(_uids))


def settle(obj: dict[str, Any]) -> None:
    obj["status"] = settled_status(obj, generation=obj["metadata"]["generation"])
    obj["metadata"]["resourceVersion"] = str(next(_uids))


def first_segment(plan_: UpgradePlan) -> list[Step]:
    """The steps apply runs before it re-reads the cluster: up to and including the first wait."""
    steps = []
    for step in all_steps(plan_):
        steps.append(step)
        if isinstance(step, WaitRollout):
            break
    return steps


def converge(
    objects: list[dict[str, Any]], to: str, templates: ZoneTemplates | None, **request: Any
) -> list[Step]:
    """Apply's loop: plan from the current objects, run the first segment, repeat until nothing is left.

    Returns the writes made, in order.
    """
    writes: list[Step] = []
    for _ in range(50):
        current = plan(objects, to, templates, **request)
        assert not current.blockers, current.blockers
        if current.done:
            return writes
        for step in first_segment(current):
            execute(objects, step)
            if step.writes:
                writes.append(step)
    raise AssertionError("the plan does not converge")


def all_steps(plan_: UpgradePlan) -> list[Step]:
    return [step for _, step in plan_.steps()]


def copy_objects(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return copy.deepcopy(list(objects))
