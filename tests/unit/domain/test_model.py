"""The inventory model: deep immutability, cloning, and the rollout predicates validate and plan rely on."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kubectl_capc.domain.inventory import build_inventories
from kubectl_capc.domain.model import ClusterInventory, FrozenDict, Replicas, freeze, normalize_version, thaw
from tests.support.fixtures_capc import raw_objects, render_cluster, with_settled_status


def settled(capi: str = "v1beta2", **kwargs: Any) -> list[dict[str, Any]]:
    return with_settled_status(render_cluster("c1", capi=capi, with_machines=True, **kwargs))


def read(objects: list[dict[str, Any]], capi: str = "v1beta2") -> ClusterInventory:
    (inv,) = build_inventories(raw_objects(objects), capi)  # type: ignore[arg-type]
    return inv


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_frozen_dict_is_deeply_immutable_and_hashable() -> None:
    frozen = freeze({"a": {"b": [1, {"c": 2}]}, "d": "x"})
    assert isinstance(frozen, FrozenDict)
    assert frozen["a"]["b"] == (1, FrozenDict({"c": 2}))
    with pytest.raises(TypeError):
        frozen["d"] = "y"  # type: ignore[index]
    assert hash(frozen) == hash(freeze({"d": "x", "a": {"b": [1, {"c": 2}]}}))
    assert frozen == freeze({"d": "x", "a": {"b": [1, {"c": 2}]}})
    assert frozen != freeze({"d": "y", "a": {"b": [1, {"c": 2}]}})


def test_thaw_returns_fresh_mutable_data() -> None:
    data = {"a": {"b": [1, {"c": 2}]}}
    thawed = thaw(freeze(data))
    assert thawed == data
    thawed["a"]["b"].append(3)
    assert data == {"a": {"b": [1, {"c": 2}]}}


def test_inventory_is_frozen_and_clones_do_not_leak_back() -> None:
    inv = read(settled())
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.cluster.name = "other"  # type: ignore[misc]
    template = inv.machine_templates_in_use()[0]
    clone = template.clone_manifest()
    clone["metadata"]["name"] = "renamed"
    clone["spec"]["template"]["spec"]["template"]["name"] = "ubuntu-2204-kube-v1.29.3"
    assert template.manifest["metadata"]["name"] == template.name != "renamed"
    assert template.spec["template"]["name"] == "ubuntu-2204-kube-v1.28.5"
    assert hash(inv) == hash(read(settled()))  # equal reads are equal values


def test_clone_keeps_every_field_of_the_stored_object() -> None:
    objects = settled()
    csmt = of_kind(objects, "CloudStackMachineTemplate")
    csmt["metadata"].update(uid="u-1", resourceVersion="42", labels={"team": "a"})
    csmt["spec"]["template"]["spec"]["networks"] = [{"name": "n1"}]
    template = next(t for t in read(objects).namespace_templates if t.name == csmt["metadata"]["name"])
    assert template.clone_manifest() == csmt
    assert (template.uid, template.resource_version, dict(template.labels)) == ("u-1", "42", {"team": "a"})


def test_normalize_version() -> None:
    assert normalize_version("1.28.5") == "v1.28.5"
    assert normalize_version(" v1.28.5 ") == "v1.28.5"
    assert normalize_version("") == ""


@pytest.mark.parametrize(
    ("replicas", "settled_"),
    [
        (Replicas(desired=3, current=3, ready=3, up_to_date=3, available=3), True),
        (
            Replicas(desired=3, current=4, ready=4, up_to_date=3, available=4),
            False,
        ),  # surge machine still there
        (Replicas(desired=3, current=3, ready=3, up_to_date=2, available=3), False),
        (Replicas(desired=3, current=3, ready=2, up_to_date=3, available=3), False),
        (Replicas(desired=0), True),
        (Replicas(desired=None, current=2, ready=2, up_to_date=2, available=2), True),
    ],
)
def test_replicas_settled(replicas: Replicas, settled_: bool) -> None:
    assert replicas.settled is settled_


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_settled_cluster_has_no_rollout(capi: str) -> None:
    inv = read(settled(capi), capi)
    assert inv.control_plane is not None
    assert not inv.control_plane.rollout_in_progress()
    assert not inv.machine_deployments[0].rollout_in_progress()
    assert not inv.rollout_in_progress()
    assert inv.machines_off_spec() == ()


def test_template_change_not_yet_observed_is_a_rollout() -> None:
    """An image-only rotation keeps the version: only the generation tells the change is pending."""
    objects = settled()
    kcp = of_kind(objects, "KubeadmControlPlane")
    kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]["name"] = "c1-control-plane-2"
    kcp["metadata"]["generation"] = 2
    inv = read(objects)
    assert inv.control_plane is not None
    assert not inv.control_plane.observed
    assert inv.control_plane.rollout_in_progress()
    kcp["status"]["observedGeneration"] = 2
    assert not read(objects).control_plane.rollout_in_progress()  # type: ignore[union-attr]


def test_status_version_behind_spec_is_a_rollout() -> None:
    objects = settled()
    of_kind(objects, "KubeadmControlPlane")["spec"]["version"] = (
        "1.29.3"  # observed, counts settled, old version
    )
    inv = read(objects)
    assert inv.control_plane is not None and inv.control_plane.rollout_in_progress()


def test_mixed_status_versions_are_a_rollout() -> None:
    objects = settled()
    md = of_kind(objects, "MachineDeployment")
    md["status"]["versions"] = [{"version": "v1.28.5", "replicas": 1}, {"version": "v1.29.3", "replicas": 1}]
    inv = read(objects)
    assert inv.machine_deployments[0].rollout_in_progress()
    md["status"]["versions"] = [{"version": "v1.28.5", "replicas": 2}]
    assert not read(objects).machine_deployments[0].rollout_in_progress()


def test_machine_left_on_an_old_version_is_a_rollout() -> None:
    """Status may look done while a Machine still runs the old version: the Machines have the last word."""
    objects = settled()
    machine = next(o for o in objects if o["kind"] == "Machine" and o["metadata"]["name"] == "c1-md-0-1")
    machine["spec"]["version"] = "v1.27.9"
    inv = read(objects)
    assert not inv.machine_deployments[0].rollout_in_progress()
    assert [m.name for m in inv.machines_off_spec()] == ["c1-md-0-1"]
    assert inv.rollout_in_progress()


def test_machine_versions_compare_with_or_without_v() -> None:
    objects = settled()
    for obj in objects:
        if obj["kind"] == "Machine":
            obj["spec"]["version"] = "1.28.5"
    assert read(objects).machines_off_spec() == ()


def test_rolling_out_condition_alone_is_a_rollout() -> None:
    objects = settled()
    of_kind(objects, "KubeadmControlPlane")["status"]["conditions"] = [
        {
            "type": "RollingOut",
            "status": "True",
            "reason": "RollingOut",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    inv = read(objects)
    assert inv.control_plane is not None
    assert inv.control_plane.condition("RollingOut") is not None
    assert inv.control_plane.rollout_in_progress()


def test_templates_in_use_are_listed_once() -> None:
    objects = render_cluster("c1", md_count=2)
    md1 = next(o for o in objects if o["kind"] == "MachineDeployment" and o["metadata"]["name"] == "c1-md-1")
    md1["spec"]["template"]["spec"]["infrastructureRef"]["name"] = "c1-md-0"  # two MDs share one template
    inv = read(objects, "v1beta1")
    assert [t.name for t in inv.machine_templates_in_use()] == ["c1-control-plane", "c1-md-0"]
    assert inv.template_named("c1-md-1") is not None  # still in the namespace, just unused
    assert inv.template_named("nope") is None
