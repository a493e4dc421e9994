"""The test bed's workload clusters: a real control plane per Cluster, Nodes per Machine, CAPI's drain."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.support.fault_support import cloudstack_api
from tests.support.fixtures_capc import create_objects, render_cluster
from tests.support.workload_support import (
    GROUP,
    VERSION,
    ZONE1,
    create_cluster,
    deploy,
    deploy_with_budget,
    list_machines,
    ready_nodes,
    until,
    until_drain_blocked,
    worker_names,
    workload_client,
    workload_namespace,
)
from tests.testenv import bed
from tests.testenv.workload_nodes import (
    CONTROL_PLANE_ROLE,
    MACHINE_FINALIZER,
    drain_message,
    go_duration_seconds,
)

pytestmark = pytest.mark.testbed  # its fixtures start beds through request.getfixturevalue

SEEDED = {"zones": [ZONE1], "control_plane_offering": "Large Instance", "worker_offering": "Medium Instance"}


def _workload(wbed: bed.TestBed, namespace: str, cluster: str) -> Any:
    """An ApiClient for the workload cluster; its Secret is typed and labelled as CAPI's."""
    from kubernetes import client

    workload = workload_client(wbed, namespace, cluster)
    secret = client.CoreV1Api(wbed.api_client()).read_namespaced_secret(f"{cluster}-kubeconfig", namespace)
    assert secret.type == "cluster.x-k8s.io/secret"
    assert secret.metadata.labels["cluster.x-k8s.io/cluster-name"] == cluster
    return workload


def _cluster(wbed: bed.TestBed, namespace: str, name: str, workers: int = 2) -> Any:
    create_cluster(wbed, namespace, name, workers=workers)
    return _workload(wbed, namespace, name)


def test_cluster_gets_a_workload_control_plane_with_ready_nodes_per_machine(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "alpha")
    version = client.VersionApi(workload).get_code()
    same = client.VersionApi(wbed.api_client()).get_code()
    assert (version.major, version.minor) == (same.major, same.minor)  # the bed's Kubernetes release
    nodes = {n.metadata.name: n for n in ready_nodes(workload, 3)}
    machines = {m["metadata"]["name"]: m for m in list_machines(wbed, wnamespace)}
    assert set(nodes) == set(machines)
    for name, node in nodes.items():
        machine = machines[name]
        assert node.status.node_info.kubelet_version == VERSION
        assert node.spec.provider_id.startswith("cloudstack:///")
        control_plane = "cluster.x-k8s.io/control-plane" in machine["metadata"]["labels"]
        taints = [(t.key, t.effect) for t in node.spec.taints or []]
        if control_plane:
            assert node.metadata.labels[CONTROL_PLANE_ROLE] == ""
            assert taints == [(CONTROL_PLANE_ROLE, "NoSchedule")]
        else:
            assert CONTROL_PLANE_ROLE not in node.metadata.labels
            assert taints == []

    def node_refs() -> bool:
        fresh = {m["metadata"]["name"]: m for m in list_machines(wbed, wnamespace)}
        return all((m.get("status") or {}).get("nodeRef") for m in fresh.values()) and bool(fresh)

    until("nodeRefs", node_refs)
    for machine in list_machines(wbed, wnamespace):
        ref, node = machine["status"]["nodeRef"], nodes[machine["metadata"]["name"]]
        if wbed.capi == "v1beta1":
            assert ref == {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node.metadata.name,
                "uid": node.metadata.uid,
            }
        else:
            assert ref == {"name": node.metadata.name}
        assert machine["spec"]["providerID"] == node.spec.provider_id
        assert MACHINE_FINALIZER in machine["metadata"]["finalizers"]


def test_machines_get_cloudstack_machines_cloned_from_their_templates(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    from kubernetes import client

    objects = render_cluster(
        "infra", wnamespace, capi=wbed.capi, version="v1.28.5", control_plane_replicas=1, worker_replicas=1,
        with_machines=True, zones=[ZONE1],
        control_plane_offering="Large Instance", worker_offering="Medium Instance",
    )  # fmt: skip
    create_objects(wbed.api_client(), objects)
    workload = _workload(wbed, wnamespace, "infra")
    nodes = {n.metadata.name: n for n in ready_nodes(workload, 2)}
    cs = cloudstack_api(wbed)
    custom = client.CustomObjectsApi(wbed.api_client())
    infra = "infrastructure.cluster.x-k8s.io"

    def cloned() -> list[dict[str, Any]]:
        items = custom.list_namespaced_custom_object(infra, "v1beta3", wnamespace, "cloudstackmachines")[
            "items"
        ]
        return items if len(items) == 2 and all(i.get("status") for i in items) else []

    machines = {m["metadata"]["name"]: m for m in list_machines(wbed, wnamespace)}
    for csm in until("CloudStackMachines", cloned):
        machine = machines[csm["metadata"]["name"]]
        template_name = csm["metadata"]["annotations"]["cluster.x-k8s.io/cloned-from-name"]
        template = custom.get_namespaced_custom_object(
            infra, "v1beta3", wnamespace, "cloudstackmachinetemplates", template_name
        )
        assert csm["spec"]["offering"] == template["spec"]["template"]["spec"]["offering"]
        assert csm["spec"]["template"] == template["spec"]["template"]["spec"]["template"]
        (owner,) = csm["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Machine",
            machine["metadata"]["name"],
            machine["metadata"]["uid"],
        )
        assert csm["spec"]["providerID"] == f"cloudstack:///{csm['spec']['instanceID']}"
        assert csm["spec"]["providerID"] == nodes[machine["metadata"]["name"]].spec.provider_id
        assert csm["status"]["instanceState"] == "Running"
        (vm,) = cs.listVirtualMachines(id=csm["spec"]["instanceID"], listall=True)["virtualmachine"]
        assert (vm["name"], vm["state"], vm["serviceofferingname"]) == (
            machine["metadata"]["name"],
            "Running",
            csm["spec"]["offering"]["name"],
        )


def test_a_vm_cloudstack_refuses_leaves_its_machine_without_a_node(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    from kubernetes import client

    objects = render_cluster(
        "novm", wnamespace, capi=wbed.capi, version=VERSION, control_plane_replicas=1, worker_replicas=1,
        with_machines=True, zones=[ZONE1], control_plane_offering="Large Instance",
        worker_offering="No Such Offering",
    )  # fmt: skip
    create_objects(wbed.api_client(), objects)
    workload = _workload(wbed, wnamespace, "novm")
    (node,) = ready_nodes(workload, 1)
    assert node.metadata.name.startswith("novm-control-plane")
    custom = client.CustomObjectsApi(wbed.api_client())
    worker = next(
        m
        for m in list_machines(wbed, wnamespace)
        if "cluster.x-k8s.io/deployment-name" in m["metadata"]["labels"]
    )
    csm = until(
        "CloudStackMachine",
        lambda: custom.get_namespaced_custom_object(
            "infrastructure.cluster.x-k8s.io",
            "v1beta3",
            wnamespace,
            "cloudstackmachines",
            worker["metadata"]["name"],
        ),
    )
    assert "instanceID" not in csm["spec"] and not (csm.get("status") or {}).get("ready")
    time.sleep(2)
    assert [n.metadata.name for n in client.CoreV1Api(workload).list_node().items] == [node.metadata.name]
    fresh = custom.get_namespaced_custom_object(
        GROUP, wbed.capi, wnamespace, "machines", worker["metadata"]["name"]
    )
    assert not (fresh.get("status") or {}).get("nodeRef")


def test_deleted_cluster_takes_its_control_plane_and_secret(wbed: bed.TestBed, wnamespace: str) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "gone", workers=0)
    ready_nodes(workload, 1)
    custom = client.CustomObjectsApi(wbed.api_client())
    custom.delete_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "clusters", "gone")
    core = client.CoreV1Api(wbed.api_client())

    def secret_gone() -> bool:
        return not core.list_namespaced_secret(
            wnamespace, label_selector="cluster.x-k8s.io/cluster-name=gone"
        ).items

    until("Secret deleted", secret_gone, timeout=60)
    _until_stopped(workload)


def _until_stopped(workload: Any) -> None:
    """Wait until nothing listens on the workload apiserver's port any more."""
    endpoint = urllib.parse.urlsplit(workload.configuration.host)

    def refused() -> bool:
        try:
            socket.create_connection((endpoint.hostname, endpoint.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    until("workload apiserver stopped", refused, timeout=30)


def test_a_deleted_namespace_takes_its_clusters_and_their_control_planes(wbed: bed.TestBed) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(wbed.api_client())
    namespace = workload_namespace(wbed)
    workload = _cluster(wbed, namespace, "doomed", workers=0)
    ready_nodes(workload, 1)
    core.delete_namespace(namespace)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    until("namespace and its Cluster deleted", namespace_gone, timeout=60)
    _until_stopped(workload)


def test_pdb_blocks_the_drain_of_a_deleted_worker_until_it_is_removed(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "pdb")
    ready_nodes(workload, 3)
    pods = deploy_with_budget(workload, 2)
    assert {p.spec.node_name for p in pods} <= set(worker_names(wbed, wnamespace))
    policy = client.PolicyV1Api(workload)
    victim = pods[0].spec.node_name
    custom = client.CustomObjectsApi(wbed.api_client())
    live = custom.get_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)
    vm_id = live["spec"]["providerID"].removeprefix("cloudstack:///")
    (vm,) = cloudstack_api(wbed).listVirtualMachines(id=vm_id, listall=True)["virtualmachine"]
    assert vm["state"] == "Running"
    custom.delete_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)
    machine = until_drain_blocked(wbed, wnamespace, victim)
    status = machine["status"]
    if wbed.capi == "v1beta1":
        drain = next(c for c in status["conditions"] if c["type"] == "DrainingSucceeded")
        assert (drain["status"], drain["reason"]) == ("False", "Draining")
    else:
        drain = next(c for c in status["conditions"] if c["type"] == "Deleting")
        assert (drain["status"], drain["reason"]) == ("True", "DrainingNode")
    started = status["deletion"]["nodeDrainStartTime"]
    refusal = "ot evict pod as it would violate the pod's disruption budget. "
    refusal += "The disruption budget web needs 2 healthy pods and has 2 currently"
    held = sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in pods if p.spec.node_name == victim)
    if wbed.capi == "v1beta1":  # CAPI v1.10: the error, then its pods
        assert drain["message"] == (
            f"Drain not completed yet (started at {started}):\n* Pods with eviction failed:\n"
            f"  * Cann{refusal}: {', '.join(held)}"
        )
    else:  # CAPI v1.11 and newer: the pods, then the error
        kind = "Pods" if len(held) > 1 else "Pod"
        assert drain["message"] == (
            f"Drain not completed yet (started at {started}):\n* {kind} {', '.join(held)}: cann{refusal}"
        )
    assert client.CoreV1Api(workload).read_node(victim).spec.unschedulable is True
    time.sleep(2)
    until_drain_blocked(wbed, wnamespace, victim, timeout=1)  # still deleting: the PDB holds it

    policy.delete_namespaced_pod_disruption_budget("web", "default")

    def machine_gone() -> bool:
        names = {m["metadata"]["name"] for m in list_machines(wbed, wnamespace)}
        return victim not in names

    until("Machine deleted after the drain", machine_gone)
    assert victim not in {n.metadata.name for n in client.CoreV1Api(workload).list_node().items}
    vms = cloudstack_api(wbed).listVirtualMachines(id=vm_id, listall=True).get("virtualmachine") or []
    assert all(vm["state"] in ("Destroyed", "Expunging") for vm in vms)  # expunged: gone or on its way


def test_a_machine_deployment_counts_an_old_machine_until_its_blocked_drain_ends(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    """Rolling out a MachineDeployment whose old Machine cannot be drained: as in CAPI, its status keeps
    that Machine among the replicas (not up to date) until it is gone, so the rollout is not done."""
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "roll", workers=1)
    ready_nodes(workload, 2)
    deploy_with_budget(workload, 1)
    policy = client.PolicyV1Api(workload)
    custom = client.CustomObjectsApi(wbed.api_client())
    infra = "infrastructure.cluster.x-k8s.io"
    template = custom.get_namespaced_custom_object(
        infra, "v1beta3", wnamespace, "cloudstackmachinetemplates", "roll-md-0"
    )
    clone = {"apiVersion": template["apiVersion"], "kind": template["kind"], "spec": template["spec"],
             "metadata": {"name": "roll-md-0-next", "namespace": wnamespace}}  # fmt: skip
    custom.create_namespaced_custom_object(infra, "v1beta3", wnamespace, "cloudstackmachinetemplates", clone)
    (old,) = worker_names(wbed, wnamespace)
    repoint = {"spec": {"template": {"spec": {"infrastructureRef": {"name": "roll-md-0-next"}}}}}
    custom.patch_namespaced_custom_object(
        GROUP, wbed.capi, wnamespace, "machinedeployments", "roll-md-0", repoint
    )
    up_to_date = "updatedReplicas" if wbed.capi == "v1beta1" else "upToDateReplicas"

    def status() -> dict[str, Any]:
        md = custom.get_namespaced_custom_object(
            GROUP, wbed.capi, wnamespace, "machinedeployments", "roll-md-0"
        )
        return dict(md.get("status") or {})

    until_drain_blocked(wbed, wnamespace, old)
    until("the replacement up to date", lambda: status().get(up_to_date) == 1)
    time.sleep(2)  # a few reconciles later: still the old Machine counted
    held = status()
    assert (held["replicas"], held[up_to_date]) == (2, 1), held
    if wbed.capi == "v1beta2":
        assert held["versions"] == [{"version": VERSION, "replicas": 2}]
        scaling = next(c for c in held["conditions"] if c["type"] == "ScalingDown")
        assert (scaling["status"], scaling["message"]) == ("True", "Scaling down from 2 to 1 replicas")

    policy.delete_namespaced_pod_disruption_budget("web", "default")
    until("the old Machine gone and counted no more", lambda: status().get("replicas") == 1)
    done = status()
    assert (done["replicas"], done[up_to_date]) == (1, 1), done
    assert old not in {m["metadata"]["name"] for m in list_machines(wbed, wnamespace)}


def test_node_drain_timeout_ends_a_blocked_drain(wbed: bed.TestBed, wnamespace: str) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "timeout", workers=1)
    ready_nodes(workload, 2)
    deploy(workload, 1, {"app": "web"})
    client.PolicyV1Api(workload).create_namespaced_pod_disruption_budget(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    victim = (
        client.CoreV1Api(workload)
        .list_namespaced_pod("default", label_selector="app=web")
        .items[0]
        .spec.node_name
    )
    custom = client.CustomObjectsApi(wbed.api_client())
    timeout = (
        {"nodeDrainTimeout": "4s"} if wbed.capi == "v1beta1" else {"deletion": {"nodeDrainTimeoutSeconds": 4}}
    )
    custom.patch_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim, {"spec": timeout})
    started = time.monotonic()
    custom.delete_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)

    def machine_gone() -> bool:
        return victim not in {m["metadata"]["name"] for m in list_machines(wbed, wnamespace)}

    until_drain_blocked(wbed, wnamespace, victim, timeout=30)
    until("Machine deleted once the drain timeout passed", machine_gone, timeout=30)
    # nodeDrainStartTime has whole seconds, as metav1.Time: up to one second of the 4 s may be cut.
    assert time.monotonic() - started >= 3


class _Meta:
    def __init__(self, name: str) -> None:
        self.namespace, self.name = "default", name


class _Pod:
    def __init__(self, name: str) -> None:
        self.metadata = _Meta(name)


PDB = "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget web needs 2"


def test_drain_message_lists_pods_as_capi_1_10_does() -> None:
    pods = [_Pod(f"p{i}") for i in reversed(range(7))]  # listed in ns/name order whatever the order here
    failed = {f"error {i}": pods[:1] for i in range(6)} | {PDB: pods}
    message = drain_message("v1beta1", "2026-01-01T00:00:00Z", pods, failed)
    assert message == (
        "Drain not completed yet (started at 2026-01-01T00:00:00Z):\n"
        "* Pods with deletionTimestamp that still exist: default/p0, default/p1, default/p2, default/p3, "
        "default/p4, ... (2 more)\n"
        "* Pods with eviction failed:\n"
        f"  * {PDB}: default/p0, default/p1, default/p2, ... (4 more)\n"
        "  * error 0: default/p6\n  * error 1: default/p6\n  * error 2: default/p6\n  * error 3: default/p6\n"
        "  * ... (2 more errors applying to 2 Pods)"
    )


def test_drain_message_lists_pods_as_capi_1_11_and_newer_do() -> None:
    pods = [_Pod(f"p{i}") for i in reversed(range(5))]
    failed = {f"error {i}": pods[:1] for i in range(5)} | {PDB: pods}
    message = drain_message("v1beta2", "2026-01-01T00:00:00Z", pods[:1], failed)
    pdb = PDB[0].lower() + PDB[1:]
    assert message == (
        "Drain not completed yet (started at 2026-01-01T00:00:00Z):\n"
        "* Pod default/p4: deletionTimestamp set, but still not removed from the Node\n"
        f"* Pods default/p0, default/p1, default/p2, ... (2 more): {pdb}\n"
        "* Pod default/p4: failed to evict Pod, error 0\n* Pod default/p4: failed to evict Pod, error 1\n"
        "* Pod default/p4: failed to evict Pod, error 2\n* Pod default/p4: failed to evict Pod, error 3\n"
        "* 1 Pod with other issues"
    )


@pytest.mark.parametrize(("text", "seconds"), [("3s", 3.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 0.5)])
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration_seconds(text) == seconds


def test_a_malformed_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        go_duration_seconds("3 seconds")


def test_cli_up_with_workload_clusters_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    directory = tmp_path / "bed"
    command = [sys.executable, "-m", "tests.testenv"]
    started = subprocess.run(
        [*command, "up", "--dir", str(directory), "--capi", "v1beta2", "--workload-clusters"],
        cwd=bed.REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        tb = bed.attach(directory)
        objects = render_cluster(
            "cli", "default", capi="v1beta2", version=VERSION, control_plane_replicas=1, worker_replicas=0,
            with_machines=True, **SEEDED,
        )  # fmt: skip
        create_objects(tb.api_client(), objects)
        ready_nodes(_workload(tb, "default", "cli"), 1)
        plane_pids = [
            int(p.read_text()) for p in (directory / "workload" / "default--cli" / "pids").glob("*.pid")
        ]
        assert len(plane_pids) == 4  # apiserver, controller-manager, scheduler, kwok
    finally:
        stopped = subprocess.run(
            [*command, "down", "--dir", str(directory)],
            cwd=bed.REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in plane_pids if not _gone_within(pid, 15)] == []


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether `pid` has exited (or is a zombie waiting for its reaper) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False
