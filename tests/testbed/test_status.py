"""`kubectl capc status` on the real test bed with workload clusters, in both CAPI profiles.

A Machine deleted while a PodDisruptionBudget with maxUnavailable 0 covers a pod on its node stays
deleting, and status names the budget as `namespace/name`; a VM the CloudStack double leaves in Error is
named with that state; a Machine whose VM CloudStack refused never gets a node, and status says so once
`--join-timeout` has passed. `-o json` is the typed document, and no kubeconfig content reaches the
output, even at -v 9.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubectl_capc.domain.documents import API_VERSION
from tests.support.fault_support import cloudstack_api
from tests.support.fixtures_capc import Zone
from tests.support.rbac_support import capc, credentials_secret
from tests.support.workload_support import (
    GROUP,
    create_cluster,
    deploy_with_budget,
    faults,
    kubeconfig_text,
    list_machines,
    list_workers,
    ready_nodes,
    secret_parts,
    until,
    until_drain_blocked,
)
from tests.testenv import bed

pytestmark = pytest.mark.testbed  # its fixtures start beds through request.getfixturevalue

Capsys = pytest.CaptureFixture[str]


def _cluster(wbed: bed.TestBed, namespace: str, name: str, **options: Any) -> Any:
    """A cluster whose failure domain's credentials Secret is in its own namespace; its workload client."""
    from kubernetes.client.exceptions import ApiException

    try:
        credentials_secret(wbed, namespace)
    except ApiException as exc:  # the namespace's second cluster: it is there already
        if exc.status != 409:
            raise
    zones = [Zone("zone1", "capc-net-zone1", secret_namespace=namespace)]
    return create_cluster(wbed, namespace, name, zones=zones, **options)


def test_a_drain_held_by_a_pod_disruption_budget_is_named(
    wbed: bed.TestBed, wnamespace: str, capsys: Capsys
) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "pdb")
    policy = client.PolicyV1Api(workload)
    ready_nodes(workload, 3)
    pods = deploy_with_budget(workload, 2)
    victim = pods[0].spec.node_name
    custom = client.CustomObjectsApi(wbed.api_client())
    custom.delete_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)
    until_drain_blocked(wbed, wnamespace, victim)

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
    for part in secret_parts(kubeconfig_text(wbed, wnamespace, "pdb")):
        assert part not in as_json.out + as_json.err + table.out + table.err

    policy.delete_namespaced_pod_disruption_budget("web", "default")
    until(
        "Machine gone", lambda: victim not in {m["metadata"]["name"] for m in list_machines(wbed, wnamespace)}
    )


def test_a_vm_in_error_and_a_machine_without_node(wbed: bed.TestBed, wnamespace: str, capsys: Capsys) -> None:
    faults(wbed, {"deploys": [{"zone": "zone1", "name": "err-md-0", "errortext": "no host has room"}]})
    try:
        _cluster(wbed, wnamespace, "err", workers=1)
        (worker,) = until("worker Machine", lambda: list_workers(wbed, wnamespace))
        name = worker["metadata"]["name"]
        vms = until(
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
        faults(wbed, {})
    _cluster(wbed, wnamespace, "novm", workers=1, worker_offering="No Such Offering")
    (novm,) = until(
        "worker Machine",
        lambda: [m for m in list_workers(wbed, wnamespace) if m["spec"]["clusterName"] == "novm"],
    )

    def control_planes_joined() -> bool:
        planes = [m for m in list_machines(wbed, wnamespace) if m not in list_workers(wbed, wnamespace)]
        return len(planes) == 2 and all((m.get("status") or {}).get("nodeRef") for m in planes)

    until("both control planes with a node", control_planes_joined)
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


def test_image_upgrades_stall_report_names_what_holds_the_new_machine(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    """The replacement worker's VM is left in Error by CloudStack (and the rollout simulator keeps it
    Provisioning): the report says so for that Machine."""

    from tests.support.upgrade_support import cli, patch
    from tests.testenv.rollout_model import FAIL_ANNOTATION

    ready_nodes(_cluster(wbed, wnamespace, "stall", workers=1), 2)
    (old,) = [m["metadata"]["name"] for m in list_workers(wbed, wnamespace)]
    patch(
        wbed,
        wnamespace,
        "MachineDeployment",
        "stall-md-0",
        {"metadata": {"annotations": {FAIL_ANNOTATION: "x"}}},
    )
    faults(wbed, {"deploys": [{"zone": "zone1", "name": "stall-md-0", "errortext": "no host has room"}]})
    try:
        done = cli(
            wbed, "image-upgrade", "stall", "-n", wnamespace, "--to", "v1.29.3", "--yes",
            "--timeout", "machine-deployment=15s", timeout=300,
        )  # fmt: skip
    finally:
        faults(wbed, {})

    assert done.returncode == 6, done.stdout + done.stderr
    assert "MachineDeployment/stall-md-0 did not finish rolling out to v1.29.3 within 15s" in done.stderr
    (new,) = [m["metadata"]["name"] for m in list_workers(wbed, wnamespace) if m["metadata"]["name"] != old]
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


@contextlib.contextmanager
def _watch(wbed: bed.TestBed, namespace: str, cluster: str) -> Iterator[subprocess.Popen[str]]:
    """`status CLUSTER --watch` running; killed if it is still running when the block ends."""
    command = [sys.executable, "-m", "kubectl_capc", "status", cluster, "-n", namespace, "--watch"]
    with subprocess.Popen(
        [*command, "--kubeconfig", str(wbed.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as watching:  # fmt: skip
        try:
            yield watching
        finally:
            if watching.poll() is None:
                watching.kill()


def _line_with(watching: subprocess.Popen[str], text: str) -> list[str]:
    """The lines `status --watch` prints up to the first one holding `text` (within its first report)."""
    assert watching.stdout is not None
    lines = [watching.stdout.readline()]
    assert lines[0].startswith("OWNER"), lines[0]
    while text not in lines[-1]:
        lines.append(watching.stdout.readline())
        assert lines[-1].strip() and len(lines) < 10, lines  # no second report before it
    return lines


def test_status_watch_follows_a_held_drain_live_until_it_is_done(wbed: bed.TestBed, wnamespace: str) -> None:
    """While a PodDisruptionBudget holds a drain, `status --watch` shows it and goes on (Ctrl-C ends it
    with 130); once the budget is gone and the machine with it, it prints again and ends by itself."""
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "watch")
    ready_nodes(workload, 3)
    pods = deploy_with_budget(workload, 2)
    victim = pods[0].spec.node_name
    custom = client.CustomObjectsApi(wbed.api_client())
    custom.delete_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines", victim)
    until_drain_blocked(wbed, wnamespace, victim)
    held = "drain blocked by PodDisruptionBudget default/web (2 healthy, needs 2)"

    with _watch(wbed, wnamespace, "watch") as watching:
        assert _line_with(watching, held)[-1].split()[0] == victim
        time.sleep(2)
        assert watching.poll() is None  # a held drain is not the end: it keeps following
        watching.send_signal(signal.SIGINT)
        _, err = watching.communicate(timeout=30)
    assert watching.returncode == 130, err
    assert "Traceback" not in err

    with _watch(wbed, wnamespace, "watch") as watching:
        _line_with(watching, held)
        client.PolicyV1Api(workload).delete_namespaced_pod_disruption_budget("web", "default")
        rest, err = watching.communicate(timeout=120)
    assert watching.returncode == 0, err  # settled: nothing held up, nothing on an old version
    assert victim not in {m["metadata"]["name"] for m in list_machines(wbed, wnamespace)}
    tables = rest.split("OWNER")
    assert len(tables) >= 2, rest  # printed again as the machine went
    assert victim not in tables[-1] and "drain blocked" not in tables[-1], rest
