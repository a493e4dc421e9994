"""`kubectl capc status` on the real test bed with workload clusters, in both CAPI profiles.

A Machine deleted while a PodDisruptionBudget with maxUnavailable 0 covers a pod on its node stays
deleting, and status names the budget as `namespace/name`; a VM the CloudStack double leaves in Error is
named with that state; a Machine whose VM CloudStack refused never gets a node, and status says so once
`--join-timeout` has passed. `-o json` is the typed document, and no kubeconfig content reaches the
output, even at -v 9.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from kubectl_capc.domain.documents import API_VERSION
from tests.support.fault_support import cloudstack_api
from tests.support.fixtures_capc import Zone, create_objects, render_cluster
from tests.support.rbac_support import capc, credentials_secret
from tests.testenv import bed

VERSION = "v1.28.5"
GROUP = "cluster.x-k8s.io"
Capsys = pytest.CaptureFixture[str]


@pytest.fixture(params=["v1beta1", "v1beta2"])
def wbed(request: pytest.FixtureRequest) -> bed.TestBed:
    return request.getfixturevalue(f"workload_testenv_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def wnamespace(wbed: bed.TestBed) -> Iterator[str]:
    from kubernetes import client

    name = f"s-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(wbed.api_client()).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(wbed.api_client()).delete_namespace(name)


def _until(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
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


def _cluster(
    wbed: bed.TestBed,
    namespace: str,
    name: str,
    *,
    workers: int = 2,
    worker_offering: str = "Medium Instance",
) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        credentials_secret(wbed, namespace)
    except ApiException as exc:  # the namespace's second cluster: it is there already
        if exc.status != 409:
            raise
    zones = [Zone("zone1", "capc-net-zone1", secret_namespace=namespace)]
    objects = render_cluster(
        name, namespace, capi=wbed.capi, version=VERSION, control_plane_replicas=1, worker_replicas=workers,
        with_machines=True, zones=zones, control_plane_offering="Large Instance",
        worker_offering=worker_offering,
    )  # fmt: skip
    create_objects(wbed.api_client(), objects)


def _kubeconfig_text(wbed: bed.TestBed, namespace: str, name: str) -> str:
    from kubernetes import client

    core = client.CoreV1Api(wbed.api_client())
    secret = _until("kubeconfig Secret", lambda: core.read_namespaced_secret(f"{name}-kubeconfig", namespace))
    return base64.b64decode(secret.data["value"]).decode()


def _workload(wbed: bed.TestBed, namespace: str, name: str) -> Any:
    from kubernetes import config

    return config.new_client_from_config_dict(yaml.safe_load(_kubeconfig_text(wbed, namespace, name)))


def _machines(wbed: bed.TestBed, namespace: str) -> list[dict[str, Any]]:
    from kubernetes import client

    custom = client.CustomObjectsApi(wbed.api_client())
    return list(custom.list_namespaced_custom_object(GROUP, wbed.capi, namespace, "machines")["items"])


def _workers(wbed: bed.TestBed, namespace: str) -> list[dict[str, Any]]:
    return [
        m for m in _machines(wbed, namespace) if "cluster.x-k8s.io/deployment-name" in m["metadata"]["labels"]
    ]


def _secret_parts(kubeconfig: str) -> list[str]:
    """What of a kubeconfig must never be shown: its credentials and certificate data."""
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


def test_a_drain_held_by_a_pod_disruption_budget_is_named(
    wbed: bed.TestBed, wnamespace: str, capsys: Capsys
) -> None:
    from kubernetes import client

    _cluster(wbed, wnamespace, "pdb")
    workload = _workload(wbed, wnamespace, "pdb")
    core, policy = client.CoreV1Api(workload), client.PolicyV1Api(workload)
    _until("3 nodes", lambda: len(core.list_node().items) == 3)
    pods = _deployment_with_budget(workload, 2)
    victim = pods[0].spec.node_name
    custom = client.CustomObjectsApi(wbed.api_client())
    custom.delete_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)

    def blocked() -> bool:
        machine = custom.get_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)
        return bool(((machine.get("status") or {}).get("deletion") or {}).get("nodeDrainStartTime"))

    _until("drain blocked", blocked)

    table = capc(capsys, wbed.kubeconfig, "status", "pdb", "-n", wnamespace)
    assert table.code == 1, table.err
    (row,) = [line for line in table.out.splitlines() if line.split()[:1] == [victim]]
    assert row.split(None, 3)[3].endswith(
        "drain blocked by PodDisruptionBudget default/web (2 healthy, needs 2)"
    ), table.out
    assert "MachineDeployment/pdb-md-0" in table.out and "KubeadmControlPlane/pdb-control-plane" in table.out

    as_json = capc(capsys, wbed.kubeconfig, "status", "pdb", "-n", wnamespace, "-o", "json", "-v", "9")
    assert as_json.code == 1, as_json.err
    document = json.loads(as_json.out)
    assert (document["apiVersion"], document["kind"], document["blocked"]) == (
        API_VERSION,
        "RolloutStatus",
        True,
    )
    assert document["cluster"] == {"namespace": wnamespace, "name": "pdb"}
    (md,) = [o for o in document["owners"] if o["kind"] == "MachineDeployment"]
    (held,) = [m for m in md["machineStatus"] if m["cause"]]
    assert held["name"] == victim and "default/web" in held["cause"]
    for part in _secret_parts(_kubeconfig_text(wbed, wnamespace, "pdb")):
        assert part not in as_json.out + as_json.err + table.out + table.err

    policy.delete_namespaced_pod_disruption_budget("web", "default")
    _until("Machine gone", lambda: victim not in {m["metadata"]["name"] for m in _machines(wbed, wnamespace)})


def _faults(wbed: bed.TestBed, faults: dict[str, Any]) -> None:
    request = urllib.request.Request(
        wbed.admin_url("faults"), data=json.dumps(faults).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_a_vm_in_error_and_a_machine_without_node(wbed: bed.TestBed, wnamespace: str, capsys: Capsys) -> None:
    _faults(wbed, {"deploys": [{"zone": "zone1", "name": "err-md-0", "errortext": "no host has room"}]})
    try:
        _cluster(wbed, wnamespace, "err", workers=1)
        (worker,) = _until("worker Machine", lambda: _workers(wbed, wnamespace))
        name = worker["metadata"]["name"]
        vms = _until(
            "VM in Error",
            lambda: [
                vm
                for vm in cloudstack_api(wbed)
                .listVirtualMachines(name=name, listall=True)
                .get("virtualmachine")
                or []
                if vm["name"] == name and vm["state"] == "Error"
            ],
        )
        assert vms
    finally:
        _faults(wbed, {})
    _cluster(wbed, wnamespace, "novm", workers=1, worker_offering="No Such Offering")
    (novm,) = _until(
        "worker Machine",
        lambda: [m for m in _workers(wbed, wnamespace) if m["spec"]["clusterName"] == "novm"],
    )

    def control_planes_joined() -> bool:
        planes = [m for m in _machines(wbed, wnamespace) if m not in _workers(wbed, wnamespace)]
        return len(planes) == 2 and all((m.get("status") or {}).get("nodeRef") for m in planes)

    _until("both control planes with a node", control_planes_joined)
    time.sleep(2)  # past --join-timeout for the worker without a node

    run = capc(capsys, wbed.kubeconfig, "status", "-n", wnamespace, "--join-timeout", "1s", "-o", "json")

    assert run.code == 1, run.err
    document = json.loads(run.out)
    assert document["kind"] == "RolloutStatusList"
    causes = {
        m["name"]: m["cause"]
        for item in document["items"]
        for owner in item["owners"]
        for m in owner["machineStatus"]
    }
    assert causes[name] == "VM in Error state: no CloudStack error recorded"
    assert causes[novm["metadata"]["name"]].startswith("node never joined (no nodeRef after ")
    # The control planes run; their machines are not held up.
    assert [c for n, c in causes.items() if "control-plane" in n] == [None, None]

    table = capc(capsys, wbed.kubeconfig, "status", "-n", wnamespace, "--join-timeout", "1s")
    assert table.code == 1 and table.out.startswith("CLUSTER "), table.out
    assert f"{wnamespace}/err" in table.out and f"{wnamespace}/novm" in table.out


def _deployment_with_budget(workload: Any, replicas: int) -> list[Any]:
    """`replicas` pods of Deployment default/web under PodDisruptionBudget default/web (maxUnavailable 0)."""
    from kubernetes import client

    apps, core, policy = client.AppsV1Api(workload), client.CoreV1Api(workload), client.PolicyV1Api(workload)
    labels = {"app": "web"}
    container = {"name": "web", "image": "nginx"}
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )

    def running() -> list[Any]:
        pods = core.list_namespaced_pod("default", label_selector="app=web").items
        return pods if len(pods) == replicas and all(p.status.phase == "Running" for p in pods) else []

    pods = _until(f"{replicas} running pods", running)
    budget = {"metadata": {"name": "web"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": labels}}}
    policy.create_namespaced_pod_disruption_budget("default", budget)
    _until(
        "PDB observed",
        lambda: (
            policy.read_namespaced_pod_disruption_budget("web", "default").status.expected_pods == replicas
        ),
    )
    return list(pods)


def test_image_upgrades_stall_report_names_what_holds_the_new_machine(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    """The replacement worker's VM is left in Error by CloudStack (and the rollout simulator keeps it
    Provisioning): the report says so for that Machine."""
    from kubernetes import client

    from tests.support.upgrade_support import cli, patch
    from tests.testenv.rollout_model import FAIL_ANNOTATION

    _cluster(wbed, wnamespace, "stall", workers=1)
    workload = _workload(wbed, wnamespace, "stall")
    _until("2 nodes", lambda: len(client.CoreV1Api(workload).list_node().items) == 2)
    (old,) = [m["metadata"]["name"] for m in _workers(wbed, wnamespace)]
    patch(
        wbed,
        wnamespace,
        "MachineDeployment",
        "stall-md-0",
        {"metadata": {"annotations": {FAIL_ANNOTATION: "x"}}},
    )
    _faults(wbed, {"deploys": [{"zone": "zone1", "name": "stall-md-0", "errortext": "no host has room"}]})
    try:
        done = cli(
            wbed, "image-upgrade", "stall", "-n", wnamespace, "--to", "v1.29.3", "--yes",
            "--timeout", "machine-deployment=15s", timeout=300,
        )  # fmt: skip
    finally:
        _faults(wbed, {})

    assert done.returncode == 6, done.stdout + done.stderr
    assert "MachineDeployment/stall-md-0 did not finish rolling out to v1.29.3 within 15s" in done.stderr
    (new,) = [m["metadata"]["name"] for m in _workers(wbed, wnamespace) if m["metadata"]["name"] != old]
    assert f"; held up: {new}: VM in Error state: no CloudStack error recorded" in done.stderr, done.stderr
    assert f"held up: {old}" not in done.stderr


def test_clusters_are_selected_by_label_in_one_namespace_or_all(
    testenv: bed.TestBed, namespace: str, capsys: Capsys
) -> None:
    from tests.support.upgrade_support import create_cluster, patch

    value = uuid.uuid4().hex[:8]
    for name in ("c1", "c2"):
        create_cluster(testenv, namespace, name, md_count=1, control_plane_replicas=1, worker_replicas=1)
    patch(testenv, namespace, "Cluster", "c1", {"metadata": {"labels": {"team": value}}})

    def selected(*args: str) -> list[tuple[str, str]]:
        run = capc(capsys, testenv.kubeconfig, "status", *args, "-o", "json")
        # Across all namespaces the shared bed holds other tests' clusters, some of them stuck on purpose.
        assert run.code in ((0, 1) if args == ("-A",) else (0,)), run.err
        document = json.loads(run.out)
        assert document["kind"] == "RolloutStatusList"
        return [(i["cluster"]["namespace"], i["cluster"]["name"]) for i in document["items"]]

    assert selected("-n", namespace) == [(namespace, "c1"), (namespace, "c2")]
    assert selected("-n", namespace, "-l", f"team={value}") == [(namespace, "c1")]
    assert selected("-A", "-l", f"team={value}") == [(namespace, "c1")]
    assert selected("-n", namespace, "-l", f"team!={value},team") == []
    everything = selected("-A")
    assert {(namespace, "c1"), (namespace, "c2")} <= set(everything)

    # One LIST per kind however many clusters match: the Clusters, then what the doctor reads.
    from kubectl_capc.kube.rollouts import read_rollout_objects
    from tests.support.fixtures_capc import audit_requests, tagged_api_client

    agent = f"kubectl-capc-test/{uuid.uuid4().hex[:12]}"
    read_rollout_objects(tagged_api_client(testenv.kubeconfig, agent), namespace=namespace)
    lists = sorted(
        (e.get("objectRef") or {}).get("resource", "") for e in audit_requests(testenv.audit_log, agent)
        if e["verb"] == "list"
    )  # fmt: skip
    assert lists == sorted([
        "clusters", "kubeadmcontrolplanes", "machinedeployments", "machines", "cloudstackmachines",
        "machinehealthchecks", "cloudstackmachinetemplates", "cloudstackclusters", "kubeadmconfigtemplates",
    ])  # fmt: skip

    refused = capc(capsys, testenv.kubeconfig, "status", "c1", "-n", namespace, "-l", "team")
    assert refused.code == 2 and "cannot be combined with -l" in refused.err
    table = capc(capsys, testenv.kubeconfig, "status", "c2", "-n", namespace)
    assert table.code == 0
    assert [line.split()[:2] for line in table.out.splitlines()] == [
        ["OWNER", "MACHINE"],
        ["KubeadmControlPlane/c2-control-plane", "v1.28.5"],
        ["MachineDeployment/c2-md-0", "v1.28.5"],
    ], table.out
    assert all(line.endswith(" 0 old") for line in table.out.splitlines()[1:]), table.out
