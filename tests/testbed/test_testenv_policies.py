"""The test bed rejects what the upstream CAPC and CAPI webhooks reject, with their wording."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.testenv.bed import TestBed

INFRA_GROUP = "infrastructure.cluster.x-k8s.io"


def machine_template(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{INFRA_GROUP}/v1beta3",
        "kind": "CloudStackMachineTemplate",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"offering": {"name": "Medium"}, "template": {"name": "img"}, **spec}}},
    }


def kcp(capi: str, replicas: int, **spec: Any) -> dict[str, Any]:
    infra = (
        {"apiVersion": f"{INFRA_GROUP}/v1beta3", "kind": "CloudStackMachineTemplate", "name": "t"}
        if capi == "v1beta1"
        else {"apiGroup": INFRA_GROUP, "kind": "CloudStackMachineTemplate", "name": "t"}
    )
    template: dict[str, Any] = (
        {"infrastructureRef": infra} if capi == "v1beta1" else {"spec": {"infrastructureRef": infra}}
    )
    return {
        "apiVersion": f"controlplane.cluster.x-k8s.io/{capi}",
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "cp"},
        "spec": {
            "replicas": replicas,
            "version": "v1.30.2",
            "machineTemplate": template,
            "kubeadmConfigSpec": {"preKubeadmCommands": ["swapoff -a"]},
            **spec,
        },
    }


def create(
    bed: TestBed, namespace: str, group: str, version: str, *, plural: str, body: dict[str, Any]
) -> Any:
    """A dry-run create: what admission says, nothing stored."""
    api = client.CustomObjectsApi(bed.api_client())
    return api.create_namespaced_custom_object(group, version, namespace, plural, body, dry_run="All")


def refusal(call: Any) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


@pytest.mark.parametrize("affinity", ["pro", "anti", "Anti"])
def test_affinity_group_ids_with_pro_or_anti_affinity_are_refused(
    testenv_v1beta2: TestBed, namespace: str, affinity: str
) -> None:
    body = machine_template("t", affinity=affinity, affinityGroupIDs=["ag-1"])
    message = refusal(
        lambda: create(
            testenv_v1beta2, namespace, INFRA_GROUP, "v1beta3", plural="cloudstackmachinetemplates", body=body
        )
    )
    assert "AffinityGroupIDs cannot be specified when Affinity is specified as anything but `no`" in message


@pytest.mark.parametrize("affinity", [None, "no"])
def test_affinity_group_ids_with_no_affinity_are_accepted(
    testenv_v1beta2: TestBed, namespace: str, affinity: str | None
) -> None:
    spec: dict[str, Any] = {"affinityGroupIDs": ["ag-1"]}
    if affinity:
        spec["affinity"] = affinity
    body = machine_template("t", **spec)
    create(testenv_v1beta2, namespace, INFRA_GROUP, "v1beta3", plural="cloudstackmachinetemplates", body=body)


@pytest.mark.parametrize(
    ("replicas", "spec", "message"),
    [
        (2, {}, "replicas cannot be an even number when etcd is stacked"),
        (0, {}, "replicas cannot be 0"),
    ],
)
def test_kcp_replicas_must_be_odd_and_positive_with_stacked_etcd(
    testenv: TestBed, namespace: str, replicas: int, spec: dict[str, Any], message: str
) -> None:
    body = kcp(testenv.capi, replicas, **spec)
    group = "controlplane.cluster.x-k8s.io"
    assert message in refusal(
        lambda: create(testenv, namespace, group, testenv.capi, plural="kubeadmcontrolplanes", body=body)
    )


def test_kcp_even_replicas_are_accepted_with_external_etcd(testenv: TestBed, namespace: str) -> None:
    external = {"endpoints": ["https://etcd:2379"], "caFile": "ca", "certFile": "c", "keyFile": "k"}
    body = kcp(testenv.capi, 2, kubeadmConfigSpec={"clusterConfiguration": {"etcd": {"external": external}}})
    create(
        testenv,
        namespace,
        "controlplane.cluster.x-k8s.io",
        testenv.capi,
        plural="kubeadmcontrolplanes",
        body=body,
    )


def test_kcp_version_skipping_a_minor_is_refused(testenv: TestBed, namespace: str) -> None:
    group = "controlplane.cluster.x-k8s.io"
    api = client.CustomObjectsApi(testenv.api_client())
    api.create_namespaced_custom_object(
        group, testenv.capi, namespace, "kubeadmcontrolplanes", kcp(testenv.capi, 3)
    )
    message = refusal(lambda: api.patch_namespaced_custom_object(
        group, testenv.capi, namespace, "kubeadmcontrolplanes", "cp", {"spec": {"version": "v1.32.0"}}
    ))  # fmt: skip
    assert "cannot update Kubernetes version from v1.30.2 to v1.32.0" in message


def test_kcp_version_without_v_is_defaulted(testenv: TestBed, namespace: str) -> None:
    body = kcp(testenv.capi, 3)
    body["spec"]["version"] = "1.30.2"
    created = create(
        testenv,
        namespace,
        "controlplane.cluster.x-k8s.io",
        testenv.capi,
        plural="kubeadmcontrolplanes",
        body=body,
    )
    assert created["spec"]["version"] == "v1.30.2"
