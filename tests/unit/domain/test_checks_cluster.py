"""Cluster checks (CAPC-C0xx) on rendered clusters of both CAPI shapes; no server involved."""

from __future__ import annotations

import copy

import pytest

from kubectl_capc.domain.checks import Severity
from kubectl_capc.domain.checks.cluster import check_cluster
from tests.support.checks_support import find, inventory_of, render
from tests.support.fixtures_capc import render_cluster, settled_status

CAPI = ["v1beta1", "v1beta2"]


@pytest.mark.parametrize("capi", CAPI)
def test_settled_cluster_has_no_cluster_findings(capi: str) -> None:
    assert check_cluster(inventory_of(render(capi=capi, md_count=3, with_machines=True), capi)) == []


@pytest.mark.parametrize("capi", CAPI)
def test_topology_managed_cluster_is_an_error(capi: str) -> None:
    objects = render(capi=capi, topology_class="quick-start")
    findings = check_cluster(inventory_of(objects, capi))
    [topology] = [f for f in findings if f.check_id == "CAPC-C001"]
    assert topology.severity is Severity.ERROR
    assert str(topology.subject) == "Cluster/c1"
    assert "quick-start" in topology.message


@pytest.mark.parametrize("capi", CAPI)
def test_each_paused_object_is_a_warning(capi: str) -> None:
    objects = render(capi=capi, md_count=2)
    find(objects, "Cluster")["spec"]["paused"] = True
    find(objects, "KubeadmControlPlane")["metadata"]["annotations"] = {"cluster.x-k8s.io/paused": ""}
    find(objects, "MachineDeployment", "c1-md-1")["metadata"].setdefault("annotations", {})[
        "cluster.x-k8s.io/paused"
    ] = "true"
    findings = check_cluster(inventory_of(objects, capi))
    paused = [f for f in findings if f.check_id == "CAPC-C002"]
    assert [str(f.subject) for f in paused] == [
        "Cluster/c1",
        "KubeadmControlPlane/c1-control-plane",
        "MachineDeployment/c1-md-1",
    ]
    assert all(f.severity is Severity.WARNING for f in paused)


@pytest.mark.parametrize("capi", CAPI)
def test_rollout_in_progress_from_status_is_an_error(capi: str) -> None:
    objects = render(capi=capi)
    kcp = find(objects, "KubeadmControlPlane")
    kcp["spec"]["version"] = "v1.29.3"
    kcp["metadata"]["generation"] = 2
    kcp["status"] = settled_status(kcp, version="v1.28.5", generation=1)
    findings = check_cluster(inventory_of(objects, capi))
    assert [(f.check_id, str(f.subject)) for f in findings] == [
        ("CAPC-C003", "KubeadmControlPlane/c1-control-plane"),
        ("CAPC-C006", "MachineDeployment/c1-md-0"),
    ]
    assert "rolling out v1.29.3" in findings[0].message


@pytest.mark.parametrize("capi", CAPI)
def test_machine_off_its_owners_version_is_a_rollout_in_progress(capi: str) -> None:
    objects = render(capi=capi, with_machines=True)
    machine = find(objects, "Machine", "c1-md-0-1")
    machine["spec"]["version"] = "v1.27.9"
    findings = check_cluster(inventory_of(objects, capi))
    [rollout] = findings
    assert (rollout.check_id, str(rollout.subject)) == ("CAPC-C003", "MachineDeployment/c1-md-0")
    assert "c1-md-0-1 (v1.27.9)" in rollout.message


def _with_worker_version(capi: str, cp: str, worker: str) -> list[str]:
    objects = render_cluster("c1", "ns", capi=capi, version=cp)
    md = find(objects, "MachineDeployment")
    md["spec"]["template"]["spec"]["version"] = worker
    for obj in objects:
        if obj["kind"] in ("KubeadmControlPlane", "MachineDeployment"):
            obj["metadata"]["generation"] = 1
            obj["status"] = settled_status(copy.deepcopy(obj))
    return [f.check_id for f in check_cluster(inventory_of(objects, capi))]


@pytest.mark.parametrize(
    ("cp", "worker", "expected"),
    [
        ("v1.28.5", "v1.28.1", []),  # patch skew is fine
        ("v1.28.5", "v1.29.0", ["CAPC-C004"]),  # worker newer than the control plane
        ("v1.28.5", "v1.27.3", ["CAPC-C006"]),  # one minor behind: kubeadm blocks new machines
        ("v1.28.5", "v1.25.3", ["CAPC-C006"]),  # three behind is still within the kubelet skew
        ("v1.28.5", "v1.24.3", ["CAPC-C005"]),  # four behind is not
        ("v1.27.5", "v1.24.3", ["CAPC-C005"]),  # before v1.28 the kubelet skew was two minors
    ],
)
def test_control_plane_worker_skew(cp: str, worker: str, expected: list[str]) -> None:
    assert _with_worker_version("v1beta2", cp, worker) == expected


@pytest.mark.parametrize("capi", CAPI)
def test_dangling_references_are_reported_as_incomplete(capi: str) -> None:
    objects = [
        o
        for o in render(capi=capi)
        if not (o["kind"] == "CloudStackMachineTemplate" and "md" in o["metadata"]["name"])
    ]
    findings = check_cluster(inventory_of(objects, capi))
    [incomplete] = findings
    assert incomplete.check_id == "CAPC-C007"
    assert "CloudStackMachineTemplate/c1-md-0 not found" in incomplete.message


def test_a_template_in_another_namespace_is_reported_with_that_reason() -> None:
    objects = render()
    find(objects, "MachineDeployment")["spec"]["template"]["spec"]["infrastructureRef"]["namespace"] = "other"
    (finding,) = [f for f in check_cluster(inventory_of(objects)) if f.check_id == "CAPC-C007"]
    assert "is in namespace other: Cluster API only follows references within" in finding.message
    assert "not found" not in finding.message
