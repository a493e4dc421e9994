"""What the test-bed tests with workload clusters share: the beds, a cluster with its workload cluster,
waiting, the Machines, and changes to the workload's Nodes and Pods.

`wbed` runs a test once per CAPI profile on the bed; `wnamespace` is a fresh namespace on it whose
Clusters get a workload control plane each (`tests.testenv.workload`). tests/testbed/conftest.py makes
both fixtures available to the test-bed tests.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import yaml

from tests.support.fixtures_capc import Zone, create_objects, render_cluster
from tests.testenv import bed
from tests.testenv.workload import OPT_IN_LABEL

__all__ = [
    "GROUP",
    "KWOK_NODE_ANNOTATION",
    "VERSION",
    "ZONE1",
    "create_cluster",
    "deploy",
    "deploy_with_budget",
    "faults",
    "kubeconfig_text",
    "list_machines",
    "list_workers",
    "not_ready",
    "ready_nodes",
    "secret_parts",
    "set_kubelet",
    "until",
    "until_drain_blocked",
    "wbed",
    "wnamespace",
    "worker_names",
    "workload_client",
    "workload_namespace",
]

VERSION = "v1.28.5"  # a template the seeded double holds, ready in zone1
GROUP = "cluster.x-k8s.io"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
ZONE1 = Zone("zone1", "capc-net-zone1")
WORKER_LABEL = "cluster.x-k8s.io/deployment-name"


@pytest.fixture(params=["v1beta1", "v1beta2"])
def wbed(request: pytest.FixtureRequest) -> bed.TestBed:
    return request.getfixturevalue(f"testenv_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def wnamespace(wbed: bed.TestBed) -> Iterator[str]:
    from kubernetes import client

    name = workload_namespace(wbed)
    yield name
    client.CoreV1Api(wbed.api_client()).delete_namespace(name)


def workload_namespace(wbed: bed.TestBed) -> str:
    """A fresh namespace whose Clusters get a workload control plane each."""
    from kubernetes import client

    name = f"w-{uuid.uuid4().hex[:10]}"
    labels = {OPT_IN_LABEL: "true"}
    client.CoreV1Api(wbed.api_client()).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def until(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    """`probe()` once it returns something true (exceptions count as not yet); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # not there yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not after {timeout:.0f}s (last: {last!r})")


def kubeconfig_text(wbed: bed.TestBed, namespace: str, cluster: str) -> str:
    """The kubeconfig of the `<cluster>-kubeconfig` Secret, once it is there."""
    from kubernetes import client

    core = client.CoreV1Api(wbed.api_client())
    secret = until(
        "kubeconfig Secret", lambda: core.read_namespaced_secret(f"{cluster}-kubeconfig", namespace)
    )
    return base64.b64decode(secret.data["value"]).decode()


def workload_client(wbed: bed.TestBed, namespace: str, cluster: str) -> Any:
    """An ApiClient for the workload cluster, from the kubeconfig Secret CAPI would write."""
    from kubernetes import config

    return config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text(wbed, namespace, cluster)))


def create_cluster(
    wbed: bed.TestBed,
    namespace: str,
    name: str,
    *,
    workers: int = 2,
    worker_offering: str = "Medium Instance",
    zones: Sequence[Zone] = (ZONE1,),
    version: str = VERSION,
) -> Any:
    """Create a cluster (one control-plane machine, `workers` in one MachineDeployment, the Machines as
    CAPI would create them); an ApiClient for its workload cluster."""
    objects = render_cluster(
        name, namespace, capi=wbed.capi, version=version, control_plane_replicas=1, worker_replicas=workers,
        with_machines=True, zones=zones, control_plane_offering="Large Instance",
        worker_offering=worker_offering,
    )  # fmt: skip
    create_objects(wbed.api_client(), objects)
    return workload_client(wbed, namespace, name)


def ready_nodes(workload: Any, count: int) -> list[Any]:
    """All `count` Nodes, once Ready and rid of the not-ready taint (node lifecycle lifts it)."""
    from kubernetes import client

    def ready() -> list[Any]:
        nodes = client.CoreV1Api(workload).list_node().items
        up = [
            n
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            and not any(t.key == "node.kubernetes.io/not-ready" for t in n.spec.taints or [])
        ]
        return nodes if len(up) == count == len(nodes) else []

    return list(until(f"{count} Ready nodes", ready))


def list_machines(wbed: bed.TestBed, namespace: str) -> list[dict[str, Any]]:
    from kubernetes import client

    custom = client.CustomObjectsApi(wbed.api_client())
    return list(custom.list_namespaced_custom_object(GROUP, wbed.capi, namespace, "machines")["items"])


def list_workers(wbed: bed.TestBed, namespace: str) -> list[dict[str, Any]]:
    """The Machines of MachineDeployments in `namespace`."""
    return [m for m in list_machines(wbed, namespace) if WORKER_LABEL in m["metadata"].get("labels", {})]


def until_drain_blocked(
    wbed: bed.TestBed, namespace: str, machine: str, timeout: float = 90
) -> dict[str, Any]:
    """Machine `machine` once it is deleting and its drain has started (so a budget holds it)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(wbed.api_client())

    def draining() -> dict[str, Any] | None:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, wbed.capi, namespace, "machines", machine
        )
        deletion = (found.get("status") or {}).get("deletion") or {}
        return found if deletion.get("nodeDrainStartTime") else None

    result: dict[str, Any] = until(f"the drain of {machine} blocked", draining, timeout)
    return result


def worker_names(wbed: bed.TestBed, namespace: str) -> list[str]:
    return sorted(m["metadata"]["name"] for m in list_workers(wbed, namespace))


def deploy(workload: Any, replicas: int, labels: dict[str, str], name: str = "web") -> list[Any]:
    """Deployment default/`name` of `replicas` pods labelled `labels`; its pods once all run."""
    from kubernetes import client

    client.AppsV1Api(workload).create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": name, "image": "nginx"}]},
                },
            },
        },
    )
    selector = ",".join(f"{k}={v}" for k, v in labels.items())

    def running() -> list[Any]:
        pods = client.CoreV1Api(workload).list_namespaced_pod("default", label_selector=selector).items
        return pods if len(pods) == replicas and all(p.status.phase == "Running" for p in pods) else []

    return list(until(f"{replicas} running pods", running))


def deploy_with_budget(workload: Any, replicas: int) -> list[Any]:
    """`replicas` pods of Deployment default/web under PodDisruptionBudget default/web (maxUnavailable 0),
    once the budget has seen them all and allows no disruption."""
    from kubernetes import client

    labels = {"app": "web"}
    pods = deploy(workload, replicas, labels)
    policy = client.PolicyV1Api(workload)
    budget = {"metadata": {"name": "web"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": labels}}}
    policy.create_namespaced_pod_disruption_budget("default", budget)

    def observed() -> bool:
        status = policy.read_namespaced_pod_disruption_budget("web", "default").status
        return bool(status.expected_pods == replicas and status.disruptions_allowed == 0)

    until("PDB observed", observed)
    return pods


def set_kubelet(core: Any, name: str, version: str) -> None:
    """Set the node's kubelet version; KWOK keeps a version the node already reports."""
    core.patch_node_status(name, {"status": {"nodeInfo": {"kubeletVersion": version}}})


def not_ready(core: Any, name: str) -> None:
    """Take the node from KWOK (so nothing renews it), then report it NotReady."""
    core.patch_node(name, {"metadata": {"annotations": {KWOK_NODE_ANNOTATION: None}}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "lastHeartbeatTime": now,
                 "lastTransitionTime": now}  # fmt: skip
    core.patch_node_status(name, {"status": {"conditions": [condition]}})


def faults(wbed: bed.TestBed, wanted: dict[str, Any]) -> None:
    """Set the CloudStack double's faults (`{}` clears them)."""
    request = urllib.request.Request(
        wbed.admin_url("faults"), data=json.dumps(wanted).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def secret_parts(kubeconfig: str) -> list[str]:
    """What of a kubeconfig must never be shown: all of it, its credentials and certificate data."""
    document = yaml.safe_load(kubeconfig)
    parts = [kubeconfig]
    for user in document.get("users") or []:
        parts += [
            str(v)
            for k, v in (user.get("user") or {}).items()
            if k in ("token", "client-key-data", "client-certificate-data", "password")
        ]
    for cluster in document.get("clusters") or []:
        data = (cluster.get("cluster") or {}).get("certificate-authority-data")
        if data:
            parts.append(str(data))
    return [p for p in parts if len(p) > 8]
