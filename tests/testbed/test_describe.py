"""`describe` and the inventory reader against the real test bed, in both CAPI profiles.

Clusters come from the upstream clusterctl template in the profile's own CAPI shape; the rollout
simulator reports their status. Request counts come from the apiserver's audit log, using a client
with its own User-Agent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from kubectl_capc.domain.model import ClusterInventory
from kubectl_capc.kube.read import read_inventories
from tests.support.fixtures_capc import (
    Zone,
    audit_requests,
    create_objects,
    render_cluster,
    tagged_api_client,
)
from tests.support.upgrade_support import CAPC, TWO_ZONES, cli, wait_for, wait_settled
from tests.testenv.bed import TestBed


def read(bed: TestBed, namespace: str | None, cluster: str | None = None) -> tuple[ClusterInventory, ...]:
    return read_inventories(bed.api_client(), namespace=namespace, cluster=cluster)


def create_settled(bed: TestBed, namespace: str, name: str, **kwargs: Any) -> ClusterInventory:
    """Create a cluster and wait until the simulator reports it fully rolled out."""
    create_objects(bed.api_client(), render_cluster(name, namespace, capi=bed.capi, **kwargs))
    return wait_settled(bed, namespace, name)


Request = tuple[str, str, str, str]


def request_summary(bed: TestBed, read_call: Callable[[Any], Any]) -> tuple[list[Request], list[str]]:
    """What `read_call` asked: sorted (verb, resource, version, selector) of each first request, and the
    resources of any continuation pages (a kind with more than 500 objects takes one more per page)."""
    agent = f"kubectl-capc-test/{uuid.uuid4().hex[:12]}"
    read_call(tagged_api_client(bed.kubeconfig, agent))
    first: list[Request] = []
    continued: list[str] = []
    for event in audit_requests(bed.audit_log, agent):
        ref = event.get("objectRef") or {}
        uri = event["requestURI"]
        resource = ref.get("resource") or uri.split("?")[0].rstrip("/")
        if "continue=" in uri:
            continued.append(resource)
            continue
        selector = "field" if "fieldSelector=" in uri else "label" if "labelSelector=" in uri else ""
        first.append((event["verb"], resource, ref.get("apiVersion", ""), selector))
    return sorted(first), continued


def test_describe_tree_and_json(testenv: TestBed, namespace: str) -> None:
    create_settled(testenv, namespace, "c1", md_count=2, zones=TWO_ZONES, with_machines=True)

    tree = cli(testenv, "describe", "c1", "-n", namespace)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0] == f"Cluster/{namespace}/c1  CAPI {testenv.capi}"
    credentials = "credentials default/cloudstack-credentials"
    assert f"│ ├─FailureDomain fd-zone1  zone zone1  network capc-net-zone1  {credentials}" in lines
    assert f"│ └─FailureDomain fd-zone2  zone zone2  network capc-net-zone2  {credentials}" in lines
    assert "├─ControlPlane  KubeadmControlPlane/c1-control-plane" in lines
    assert "│     version   v1.28.5 (status v1.28.5)" in lines
    assert "│     replicas  3 desired, 3 current, 3 ready, 3 up-to-date, 3 available" in lines
    assert "│     machines  3 at v1.28.5" in lines
    assert "│     image     ubuntu-2204-kube-v1.28.5" in lines
    assert "│     zones     fd-zone1 (zone1): available, fd-zone2 (zone2): available" in lines
    assert "  ├─MachineDeployment/c1-md-0" in lines
    assert "  └─MachineDeployment/c1-md-1" in lines
    assert "        replicas   2 desired, 2 current, 2 ready, 2 up-to-date, 2 available" in lines

    as_json = cli(testenv, "describe", "c1", "-n", namespace, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert (document["kind"], document["capiVersion"]) == ("ClusterDescription", testenv.capi)
    assert document["controlPlane"]["version"] == {
        "spec": "v1.28.5",
        "status": "v1.28.5",
        "running": [{"version": "v1.28.5", "replicas": 3}] if testenv.capi == "v1beta2" else [],
    }
    assert [md["name"] for md in document["machineDeployments"]] == ["c1-md-0", "c1-md-1"]
    assert [fd["name"] for fd in document["infrastructure"]["failureDomains"]] == ["fd-zone1", "fd-zone2"]
    assert document["problems"] == []


def test_describe_reports_images_missing_from_zones(testenv: TestBed, namespace: str) -> None:
    zones = (*TWO_ZONES, Zone("zone9", "capc-net-zone9"))
    create_settled(testenv, namespace, "c1", zones=zones, image="ubuntu-2204-kube-v1.27.1")
    result = cli(testenv, "describe", "c1", "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert (
        "fd-zone1 (zone1): missing, fd-zone2 (zone2): missing, fd-zone9 (zone9): not-checked" in result.stdout
    )
    assert (
        f"{namespace}/c1 failure domain fd-zone9: not checked: zone 'zone9' does not exist" in result.stderr
    )
    skipped = cli(testenv, "describe", "c1", "-n", namespace, "--no-zones")
    assert skipped.returncode == 0 and skipped.stderr == ""
    assert "zones" not in skipped.stdout


def test_reading_one_cluster_costs_the_same_for_1_or_12_machine_deployments(
    testenv: TestBed, namespace: str
) -> None:
    create_objects(
        testenv.api_client(), render_cluster("small", namespace, capi=testenv.capi, with_machines=True)
    )
    create_objects(
        testenv.api_client(),
        render_cluster("big", namespace, capi=testenv.capi, md_count=12, with_machines=True),
    )
    found: dict[str, ClusterInventory] = {}

    def reader(name: str) -> Callable[[Any], None]:
        def read_call(api: Any) -> None:
            (found[name],) = read_inventories(api, namespace=namespace, cluster=name)

        return read_call

    small, small_pages = request_summary(testenv, reader("small"))
    big, big_pages = request_summary(testenv, reader("big"))
    assert small_pages == big_pages == []
    assert len(found["small"].machine_deployments) == 1
    assert len(found["big"].machine_deployments) == 12
    assert len(found["big"].machines) == 3 + 12 * 2
    capi = testenv.capi
    assert (
        small
        == big
        == sorted(
            [
                ("get", "/apis", "", ""),
                ("list", "clusters", capi, "field"),
                ("list", "kubeadmcontrolplanes", capi, "field"),
                # by spec.clusterName, joined client-side: the label needs CAPI's webhook
                ("list", "machinedeployments", capi, ""),
                ("list", "machines", capi, ""),
                ("list", "kubeadmconfigtemplates", capi, ""),
                ("list", "cloudstackmachinetemplates", CAPC[1], ""),
                ("list", "cloudstackclusters", CAPC[1], "field"),
                # the template each Machine was built from
                ("list", "cloudstackmachines", CAPC[1], ""),
            ]
        )
    )


def test_all_namespaces_is_one_list_per_kind(testenv: TestBed, namespace: str) -> None:
    from kubernetes import client

    other = f"{namespace}-b"
    client.CoreV1Api(testenv.api_client()).create_namespace({"metadata": {"name": other}})
    try:
        for index in range(3):
            create_objects(testenv.api_client(), render_cluster(f"c{index}", namespace, capi=testenv.capi))
            create_objects(testenv.api_client(), render_cluster(f"c{index}", other, capi=testenv.capi))
        inventories: list[ClusterInventory] = []
        first, continued = request_summary(
            testenv, lambda api: inventories.extend(read_inventories(api, namespace=None))
        )
        mine = [(inv.namespace, inv.name) for inv in inventories if inv.namespace in (namespace, other)]
        assert mine == sorted((ns, f"c{i}") for ns in (namespace, other) for i in range(3))
        capi = testenv.capi
        assert first == sorted(
            [
                ("get", "/apis", "", ""),
                ("list", "clusters", capi, ""),
                ("list", "kubeadmcontrolplanes", capi, ""),
                ("list", "machinedeployments", capi, ""),
                ("list", "machines", capi, ""),
                ("list", "kubeadmconfigtemplates", capi, ""),
                ("list", "cloudstackmachinetemplates", CAPC[1], ""),
                ("list", "cloudstackclusters", CAPC[1], ""),
                ("list", "cloudstackmachines", CAPC[1], ""),
            ]
        )
        assert set(continued) <= {resource for _, resource, _, _ in first}
        cli_result = cli(testenv, "describe", "-A")
        assert cli_result.returncode == 0, cli_result.stderr
        assert f"Cluster/{namespace}/c2  CAPI {testenv.capi}" in cli_result.stdout
        assert f"Cluster/{other}/c0  CAPI {testenv.capi}" in cli_result.stdout

        # -l narrows the same Cluster LIST, here or in every namespace.
        from tests.support.upgrade_support import patch

        team = uuid.uuid4().hex[:8]
        patch(testenv, other, "Cluster", "c1", {"metadata": {"labels": {"team": team}}})
        picked = cli(testenv, "describe", "-A", "-l", f"team={team}", "-o", "json")
        assert picked.returncode == 0, picked.stderr
        items = json.loads(picked.stdout)["items"]
        assert [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in items] == [(other, "c1")]
        here = cli(testenv, "describe", "-n", namespace, "-l", f"team={team}")
        assert (here.returncode, here.stdout) == (0, "")
        assert f"No clusters found in namespace {namespace} matching team={team}." in here.stderr
        named = cli(testenv, "describe", "c1", "-n", other, "-l", f"team={team}")
        assert named.returncode == 2
        assert "a cluster name cannot be combined with -A or -l" in named.stderr
    finally:
        client.CoreV1Api(testenv.api_client()).delete_namespace(other)


def test_describe_shows_a_stalled_control_plane_rollout(testenv: TestBed, namespace: str) -> None:
    from kubernetes import client

    create_settled(testenv, namespace, "c1")
    api = client.CustomObjectsApi(testenv.api_client())
    group = "controlplane.cluster.x-k8s.io"
    api.patch_namespaced_custom_object(
        group,
        testenv.capi,
        namespace,
        "kubeadmcontrolplanes",
        "c1-control-plane",
        {
            "metadata": {"annotations": {"testenv.kubectl-capc.io/stall-at": "1"}},
            "spec": {"version": "v1.29.3"},
        },
    )

    def stalled() -> ClusterInventory | None:
        (inv,) = read(testenv, namespace, "c1")
        cp = inv.control_plane
        return inv if cp is not None and cp.observed and cp.replicas.up_to_date == 1 else None

    inv = wait_for("the control plane to stall after one machine", stalled)
    assert inv.rollout_in_progress()
    tree = cli(testenv, "describe", "c1", "-n", namespace)
    assert tree.returncode == 0, tree.stderr
    assert "├─ControlPlane  KubeadmControlPlane/c1-control-plane  [ROLLING OUT]" in tree.stdout
    assert "│     version   v1.29.3 (status v1.28.5)" in tree.stdout
    assert " 1 up-to-date" in tree.stdout


def test_topology_cluster_is_recognised_on_the_bed(testenv: TestBed, namespace: str) -> None:
    objects = [
        obj
        for obj in render_cluster("tc", namespace, capi=testenv.capi, topology_class="capc-class")
        if obj["kind"] == "Cluster"
    ]
    create_objects(testenv.api_client(), objects)
    result = cli(testenv, "describe", "tc", "-n", namespace, "-o", "yaml")
    assert result.returncode == 0, result.stderr
    import yaml

    cluster = yaml.safe_load(result.stdout)["cluster"]
    assert cluster["management"] == "topology"
    assert cluster["topology"]["class"] == "capc-class"


def test_unknown_cluster_is_a_usage_error(testenv: TestBed, namespace: str) -> None:
    result = cli(testenv, "describe", "nope", "-n", namespace)
    assert result.returncode == 2
    assert f'cluster "nope" not found in namespace "{namespace}"' in result.stderr
    empty = cli(testenv, "describe", "-n", namespace)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert f"No clusters found in namespace {namespace}." in empty.stderr
