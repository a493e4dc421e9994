"""`kubectl capc validate` reading workload clusters (CAPC-W0xx) on the test bed, both CAPI profiles.

Each cluster gets a real workload control plane with KWOK nodes (`tests.testenv.workload`) and the
`<cluster>-kubeconfig` Secret CAPI writes; the tests change the workload cluster (a PodDisruptionBudget,
a NotReady node, an old kubelet, a node no Machine owns) or the Secret, and read validate's report.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import pytest
import yaml

from kubectl_capc.__main__ import main
from tests.support.workload_support import (
    GROUP,
    KWOK_NODE_ANNOTATION,
    VERSION,
    create_cluster,
    deploy_with_budget,
    kubeconfig_text,
    not_ready,
    ready_nodes,
    set_kubelet,
    until,
    worker_names,
)
from tests.testenv import bed

pytestmark = pytest.mark.testbed  # its fixtures start beds through request.getfixturevalue


def _cluster(wbed: bed.TestBed, namespace: str, name: str, workers: int) -> Any:
    """Create a cluster; an ApiClient for its workload cluster once all its Nodes are Ready."""
    workload = create_cluster(wbed, namespace, name, workers=workers)
    ready_nodes(workload, workers + 1)
    return workload


def _validate(
    wbed: bed.TestBed, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main(["validate", *args, "-o", "json", "--kubeconfig", str(wbed.kubeconfig)])
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out), out + err


def _workload_findings(document: dict[str, Any], cluster: str) -> list[dict[str, Any]]:
    (result,) = [c for c in document["clusters"] if c["name"] == cluster]
    return [f for f in result["findings"] if f["id"].startswith("CAPC-W")]


def _ids(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(f["id"] for f in findings)


def test_a_budget_that_allows_no_disruption_fails_validate_naming_pods_and_nodes(
    wbed: bed.TestBed, wnamespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "pdb", workers=2)
    pods = deploy_with_budget(workload, 2)

    code, document, _ = _validate(wbed, capsys, "pdb", "-n", wnamespace, "--to", "v1.29")
    assert code == 1
    findings = _workload_findings(document, "pdb")
    (blocked,) = [f for f in findings if f["id"] == "CAPC-W006"]
    assert blocked["severity"] == "error"
    assert blocked["object"] == {"kind": "PodDisruptionBudget", "namespace": "default", "name": "web"}
    assert "PodDisruptionBudget default/web allows no disruption" in blocked["message"]
    for pod in pods:
        assert f"default/{pod.metadata.name}" in blocked["message"]
        assert pod.spec.node_name in blocked["message"]
    undrained = sorted(
        f["object"]["kind"] + "/" + f["object"]["name"] for f in findings if f["id"] == "CAPC-W007"
    )
    assert undrained == ["KubeadmControlPlane/pdb-control-plane", "MachineDeployment/pdb-md-0"]
    assert _ids(findings) == ["CAPC-W006", "CAPC-W007", "CAPC-W007"]

    # Without --to nothing is drained; with a drain timeout on every Machine, CAPC-W007 is gone.
    _, plain, _ = _validate(wbed, capsys, "pdb", "-n", wnamespace)
    assert _ids(_workload_findings(plain, "pdb")) == []
    custom = client.CustomObjectsApi(wbed.api_client())
    timeout = (
        {"nodeDrainTimeout": "5m"}
        if wbed.capi == "v1beta1"
        else {"deletion": {"nodeDrainTimeoutSeconds": 300}}
    )
    for machine in custom.list_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machines")["items"]:
        custom.patch_namespaced_custom_object(
            GROUP, wbed.capi, wnamespace, "machines", machine["metadata"]["name"], {"spec": timeout}
        )
    _, timed, _ = _validate(wbed, capsys, "pdb", "-n", wnamespace, "--to", "v1.29")
    assert _ids(_workload_findings(timed, "pdb")) == ["CAPC-W006"]


def test_not_ready_nodes_kubelet_skew_over_the_hops_and_a_node_without_machine(
    wbed: bed.TestBed, wnamespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "nodes", workers=2)
    core = client.CoreV1Api(workload)
    down, old = worker_names(wbed, wnamespace)
    not_ready(core, down)
    set_kubelet(core, old, "v1.25.16")  # within the skew of v1.28, 4 minors behind v1.29
    core.create_node(
        {
            "metadata": {"name": "stray", "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
            "spec": {"providerID": "cloudstack:///not-a-machine"},
        }
    )

    def stray_ready_at_version() -> bool:
        # KWOK's first status write for a new node may land after ours and set its own version: repeat.
        status = core.read_node("stray").status
        if status.node_info is None or status.node_info.kubelet_version != VERSION:
            set_kubelet(core, "stray", VERSION)
            return False
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])

    until("stray node Ready at " + VERSION, stray_ready_at_version)

    code, document, _ = _validate(wbed, capsys, "nodes", "-n", wnamespace)
    assert code == 1
    findings = {f["id"]: f for f in _workload_findings(document, "nodes")}
    assert set(findings) == {"CAPC-W002", "CAPC-W004"}
    assert findings["CAPC-W002"]["severity"] == "error"
    assert findings["CAPC-W002"]["message"] == f"1 node(s) not Ready: {down}"
    assert old not in findings["CAPC-W002"]["message"]
    assert findings["CAPC-W004"]["object"] == {"kind": "Node", "namespace": "", "name": "stray"}
    assert findings["CAPC-W004"]["severity"] == "warning"

    _, planned, _ = _validate(wbed, capsys, "nodes", "-n", wnamespace, "--to", "v1.29")
    (skew,) = [f for f in _workload_findings(planned, "nodes") if f["id"] == "CAPC-W005"]
    assert skew["message"].startswith(
        "kubelet v1.25.16 is more than 3 minors older than the API server v1.29."
    )
    assert "during the v1.29." in skew["message"] and skew["message"].endswith(f"node(s) {old}")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_workload_is_a_warning_and_the_kubeconfig_never_shows(
    wbed: bed.TestBed, wnamespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubernetes import client

    _cluster(wbed, wnamespace, "reach", workers=0)
    _cluster(wbed, wnamespace, "away", workers=0)
    text = kubeconfig_text(wbed, wnamespace, "reach")
    document = yaml.safe_load(text)
    user, cluster = document["users"][0]["user"], document["clusters"][0]["cluster"]
    secrets = [
        user["client-key-data"],
        user["client-certificate-data"],
        cluster["certificate-authority-data"],
    ]
    key_lines = base64.b64decode(user["client-key-data"]).decode().splitlines()[1:-1]
    assert key_lines
    secrets += key_lines

    port = _closed_port()
    away = yaml.safe_load(kubeconfig_text(wbed, wnamespace, "away"))
    away["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    client.CoreV1Api(wbed.api_client()).patch_namespaced_secret(
        "away-kubeconfig",
        wnamespace,
        {"data": {"value": base64.b64encode(yaml.safe_dump(away).encode()).decode()}},
    )

    _, report, _ = _validate(wbed, capsys, "-n", wnamespace)  # both clusters of the namespace
    assert _ids(_workload_findings(report, "reach")) == []
    (unreachable,) = _workload_findings(report, "away")
    assert (unreachable["id"], unreachable["severity"]) == ("CAPC-W001", "warning")
    assert f"127.0.0.1:{port}" in unreachable["message"]
    assert "PodDisruptionBudgets and removed APIs were not checked" in unreachable["message"]

    client.CoreV1Api(wbed.api_client()).delete_namespaced_secret("away-kubeconfig", wnamespace)
    _, gone, _ = _validate(wbed, capsys, "away", "-n", wnamespace)
    (missing,) = _workload_findings(gone, "away")
    assert missing["id"] == "CAPC-W001"
    assert f"Secret {wnamespace}/away-kubeconfig not found" in missing["message"]

    outputs = []
    for args in (("reach", "-n", wnamespace, "--to", "v1.29"), ("-n", wnamespace)):
        _, _, output = _validate(wbed, capsys, *args, "-v", "9")
        outputs.append(output)
    assert any(
        "D kubectl_capc.kube.rest: GET https://127.0.0.1:" in output for output in outputs
    )  # -v 9 logged
    for output in outputs:
        for secret in secrets:
            assert secret not in output


def test_removed_apis_requested_and_objects_written_in_them_fail_validate(
    wbed: bed.TestBed, wnamespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The workload API server serves resource.k8s.io/v1beta1 (removed in v1.38): a request to it shows
    in the deprecated-API metric, an object written in it in its managedFields."""
    from kubernetes import client

    workload = _cluster(wbed, wnamespace, "apis", workers=0)
    custom = client.CustomObjectsApi(workload)
    group = "resource.k8s.io"

    def device_class(name: str, version: str) -> None:
        body = {"apiVersion": f"{group}/{version}", "kind": "DeviceClass",
                "metadata": {"name": name, "labels": {"team": name}}, "spec": {}}  # fmt: skip
        custom.create_cluster_custom_object(group, version, "deviceclasses", body)

    def removed_api_findings(target: str) -> list[str]:
        _, document, _ = _validate(wbed, capsys, "apis", "-n", wnamespace, "--to", target)
        findings = _workload_findings(document, "apis")
        assert all(f["severity"] == "error" for f in findings if f["id"] == "CAPC-W008")
        return sorted(f["message"] for f in findings if f["id"] == "CAPC-W008" and group in f["message"])

    assert removed_api_findings("v1.38") == []
    device_class("gpu", "v1beta1")  # requested in the removed version, and written in it
    device_class("tpu", "v1")

    written, requested = removed_api_findings("v1.38")  # sorted: "1 object(s)..." first
    assert requested == (
        f"the workload still requests {group}/v1beta1 deviceclasses, removed in v1.38 (upgrade to v1.38.0)"
    )
    prefix = (
        f"1 object(s) of deviceclasses were written as {group}/v1beta1, removed in v1.38 (upgrade to "
        "v1.38.0): gpu ("
    )
    assert written.startswith(prefix) and written.endswith(f"); write them as {group}/v1"), written
    assert "tpu" not in written
    assert removed_api_findings("v1.37") == []  # the version outlives that target

    # Written once more in the replacement by the same writer: the object is fine, the requests stay counted.
    time.sleep(1.1)  # managedFields times are whole seconds
    custom.patch_cluster_custom_object(
        group, "v1", "deviceclasses", "gpu", {"metadata": {"labels": {"v": "1"}}}
    )
    assert removed_api_findings("v1.38") == [requested]
