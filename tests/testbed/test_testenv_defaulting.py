"""The test bed applies CAPI's defaulting webhooks (as MutatingAdmissionPolicies) on create and update,
in both CAPI profiles, except in namespaces labelled to behave like a cluster without CAPI's webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.testenv.bed import NO_DEFAULTING_LABEL, TestBed

CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"
INFRA_GROUP = "infrastructure.cluster.x-k8s.io"


def ref(capi: str, group_version: str, kind: str, name: str) -> dict[str, str]:
    if capi == "v1beta1":
        return {"apiVersion": group_version, "kind": kind, "name": name}
    return {"apiGroup": group_version.partition("/")[0], "kind": kind, "name": name}


def machine_deployment(capi: str, name: str) -> dict[str, Any]:
    """A MachineDeployment as CAPC's stock templates ship it: no labels, `matchLabels: null`."""
    return {
        "apiVersion": f"cluster.x-k8s.io/{capi}",
        "kind": "MachineDeployment",
        "metadata": {"name": name},
        "spec": {
            "clusterName": "c1",
            "replicas": 1,
            "selector": {"matchLabels": None},
            "template": {
                "spec": {
                    "clusterName": "c1",
                    "version": "v1.30.2",
                    "bootstrap": {"dataSecretName": "boot"},
                    "infrastructureRef": ref(
                        capi, f"{INFRA_GROUP}/v1beta3", "CloudStackMachineTemplate", "t"
                    ),
                }
            },
        },
    }


def machine(capi: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"cluster.x-k8s.io/{capi}",
        "kind": "Machine",
        "metadata": {"name": name},
        "spec": {
            "clusterName": "c1",
            "bootstrap": {"dataSecretName": "boot"},
            "infrastructureRef": ref(capi, f"{INFRA_GROUP}/v1beta3", "CloudStackMachine", name),
        },
    }


def create(bed: TestBed, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    api = client.CustomObjectsApi(bed.api_client())
    return dict(api.create_namespaced_custom_object("cluster.x-k8s.io", bed.capi, namespace, plural, body))


@pytest.fixture
def undefaulted_namespace(testenv: TestBed) -> Iterator[str]:
    core = client.CoreV1Api(testenv.api_client())
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": {NO_DEFAULTING_LABEL: "true"}}})
    yield name
    core.delete_namespace(name)


def test_a_machine_deployment_without_labels_gets_capi_s_labels_and_selector(
    testenv: TestBed, namespace: str
) -> None:
    created = create(testenv, namespace, "machinedeployments", machine_deployment(testenv.capi, "md-0"))

    wanted = {CLUSTER_LABEL: "c1", DEPLOYMENT_LABEL: "md-0"}
    assert created["metadata"]["labels"] == {CLUSTER_LABEL: "c1"}
    assert created["spec"]["selector"]["matchLabels"] == wanted
    assert created["spec"]["template"]["metadata"]["labels"] == wanted


def test_an_existing_selector_keeps_its_labels_and_gains_the_cluster_name(
    testenv: TestBed, namespace: str
) -> None:
    body = machine_deployment(testenv.capi, "md-1")
    body["spec"]["selector"] = {"matchLabels": {"pool": "a"}}
    body["spec"]["template"]["metadata"] = {"labels": {"pool": "a"}}
    created = create(testenv, namespace, "machinedeployments", body)

    assert created["spec"]["selector"]["matchLabels"] == {"pool": "a", CLUSTER_LABEL: "c1"}
    assert created["spec"]["template"]["metadata"]["labels"] == {"pool": "a", CLUSTER_LABEL: "c1"}


def test_an_update_that_drops_the_cluster_label_gets_it_back(testenv: TestBed, namespace: str) -> None:
    create(testenv, namespace, "machinedeployments", machine_deployment(testenv.capi, "md-2"))
    api = client.CustomObjectsApi(testenv.api_client())
    patched = api.patch_namespaced_custom_object(
        "cluster.x-k8s.io", testenv.capi, namespace, "machinedeployments", "md-2",
        {"metadata": {"labels": None}},
    )  # fmt: skip
    assert patched["metadata"]["labels"] == {CLUSTER_LABEL: "c1"}


def test_a_machine_gets_the_cluster_name_label(testenv: TestBed, namespace: str) -> None:
    created = create(testenv, namespace, "machines", machine(testenv.capi, "m-0"))
    assert created["metadata"]["labels"][CLUSTER_LABEL] == "c1"


def test_objects_in_an_opted_out_namespace_stay_as_written(
    testenv: TestBed, undefaulted_namespace: str
) -> None:
    md = create(
        testenv, undefaulted_namespace, "machinedeployments", machine_deployment(testenv.capi, "md-0")
    )
    m = create(testenv, undefaulted_namespace, "machines", machine(testenv.capi, "m-0"))

    assert "labels" not in md["metadata"]
    assert not (md["spec"].get("selector") or {}).get("matchLabels")
    assert "labels" not in ((md["spec"]["template"].get("metadata")) or {})
    assert "labels" not in m["metadata"]
