"""The test bed's apiserver really enforces what a management cluster enforces.

Schema validation from the upstream CRDs, dry-run semantics, optimistic concurrency, truthful served
versions, and each admission policy that mirrors an upstream webhook rule.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.testenv.bed import TestBed

INFRA = ("infrastructure.cluster.x-k8s.io", "v1beta3", "cloudstackmachinetemplates")


def csmt(name: str, namespace: str, **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "offering": {"name": "Medium Instance"},
        "template": {"name": "ubuntu-2204-kube-v1.28.5"},
        "sshKey": "capc-key",
        "details": {"nicAdapter": "e1000"},
        "affinityGroupIDs": ["a1"],
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
        "kind": "CloudStackMachineTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": spec}},
    }


def kcp(bed: TestBed, name: str, namespace: str, version: str) -> dict[str, Any]:
    if bed.capi == "v1beta1":
        template: dict[str, Any] = {
            "infrastructureRef": {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
                "kind": "CloudStackMachineTemplate",
                "name": f"{name}-cp",
                "namespace": namespace,
            }
        }
    else:
        template = {
            "spec": {
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "CloudStackMachineTemplate",
                    "name": f"{name}-cp",
                }
            }
        }
    return {
        "apiVersion": f"controlplane.cluster.x-k8s.io/{bed.capi}",
        "kind": "KubeadmControlPlane",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 3,
            "version": version,
            "machineTemplate": template,
            "kubeadmConfigSpec": {"preKubeadmCommands": ["true"]},
        },
    }


def md(bed: TestBed, name: str, namespace: str, version: str) -> dict[str, Any]:
    if bed.capi == "v1beta1":
        infra: dict[str, Any] = {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
            "kind": "CloudStackMachineTemplate",
            "name": "w",
        }
        boot: dict[str, Any] = {
            "configRef": {
                "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
                "kind": "KubeadmConfigTemplate",
                "name": "w",
            }
        }
    else:
        infra = {
            "apiGroup": "infrastructure.cluster.x-k8s.io",
            "kind": "CloudStackMachineTemplate",
            "name": "w",
        }
        boot = {
            "configRef": {
                "apiGroup": "bootstrap.cluster.x-k8s.io",
                "kind": "KubeadmConfigTemplate",
                "name": "w",
            }
        }
    return {
        "apiVersion": f"cluster.x-k8s.io/{bed.capi}",
        "kind": "MachineDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterName": "c1",
            "replicas": 1,
            "selector": {"matchLabels": {"md": name}},
            "template": {
                "metadata": {"labels": {"md": name}},
                "spec": {
                    "clusterName": "c1",
                    "version": version,
                    "infrastructureRef": infra,
                    "bootstrap": boot,
                },
            },
        },
    }


def custom(bed: TestBed) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(bed.api_client())


def create(bed: TestBed, body: dict[str, Any], plural: str, **kwargs: Any) -> dict[str, Any]:
    group, version = body["apiVersion"].split("/")
    ns = body["metadata"]["namespace"]
    return custom(bed).create_namespaced_custom_object(group, version, ns, plural, body, **kwargs)  # type: ignore[no-any-return]


def replace(bed: TestBed, body: dict[str, Any], plural: str) -> dict[str, Any]:
    group, version = body["apiVersion"].split("/")
    meta = body["metadata"]
    return custom(bed).replace_namespaced_custom_object(
        group, version, meta["namespace"], plural, meta["name"], body
    )  # type: ignore[no-any-return]


def rejected(call: Any) -> ApiException:
    with pytest.raises(ApiException) as info:
        call()
    return info.value


def test_crd_schema_rejects_invalid_machine_template(testenv: TestBed, namespace: str) -> None:
    bad = csmt("bad", namespace)
    del bad["spec"]["template"]["spec"]["offering"]
    bad["spec"]["template"]["spec"]["diskOffering"] = {"name": "x"}  # mountPath/device/... required by schema
    err = rejected(lambda: create(testenv, bad, INFRA[2]))
    assert err.status == 422
    assert "offering" in err.body and "mountPath" in err.body


def test_dry_run_does_not_persist(testenv: TestBed, namespace: str) -> None:
    created = create(testenv, csmt("dry", namespace), INFRA[2], dry_run="All")
    assert created["metadata"]["name"] == "dry"
    listed = custom(testenv).list_namespaced_custom_object(*INFRA[:2], namespace, INFRA[2])
    assert listed["items"] == []


def test_stale_resource_version_conflicts(testenv: TestBed, namespace: str) -> None:
    first = create(testenv, csmt("occ", namespace), INFRA[2])
    fresh = copy.deepcopy(first)
    fresh["metadata"].setdefault("labels", {})["a"] = "1"
    replace(testenv, fresh, INFRA[2])
    first["metadata"].setdefault("labels", {})["a"] = "2"
    assert rejected(lambda: replace(testenv, first, INFRA[2])).status == 409


def _resources(bed: TestBed, group_version: str) -> set[str]:
    group, version = group_version.split("/")
    found = custom(bed).get_api_resources(group, version)
    return {r.name for r in found.resources if "/" not in r.name}


def test_only_truthful_versions_are_served(testenv: TestBed) -> None:
    groups = {
        g.name: {v.version for v in g.versions}
        for g in client.ApisApi(testenv.api_client()).get_api_versions().groups
    }
    assert groups["cluster.x-k8s.io"] == {testenv.capi}
    assert groups["controlplane.cluster.x-k8s.io"] == {testenv.capi}
    assert groups["bootstrap.cluster.x-k8s.io"] == {testenv.capi}
    # Every CAPC kind is served only at its storage version: v1beta3, except the v1beta1-only CloudStackZone.
    assert groups["infrastructure.cluster.x-k8s.io"] == {"v1beta3", "v1beta1"}
    assert _resources(testenv, "infrastructure.cluster.x-k8s.io/v1beta1") == {"cloudstackzones"}
    assert {"cloudstackmachinetemplates", "cloudstackclusters", "cloudstackmachines"} <= _resources(
        testenv, "infrastructure.cluster.x-k8s.io/v1beta3"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("template", {}), ("template", {"id": "", "name": ""}), ("offering", {}), ("affinity", "sideways")],
)
def test_policy_machine_template_create_requires_identity(
    testenv: TestBed, namespace: str, field: str, value: Any
) -> None:
    err = rejected(lambda: create(testenv, csmt("c", namespace, **{field: value}), INFRA[2]))
    assert err.status == 422
    assert "capc-cloudstackmachinetemplate-create" in err.body


def test_policy_machine_template_create_accepts_id_only(testenv: TestBed, namespace: str) -> None:
    ok = csmt(
        "ok", namespace, template={"id": "0e6c7b9a-5b59-4e77-9d4e-1a8b5c3f2d10"}, offering={"id": "off-1"}
    )
    assert create(testenv, ok, INFRA[2])["metadata"]["uid"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("template", {"name": "ubuntu-2204-kube-v1.29.3"}),
        ("template", {"name": "ubuntu-2204-kube-v1.28.5", "id": "x"}),
        ("offering", {"name": "Large Instance"}),
        (
            "diskOffering",
            {"name": "Big", "mountPath": "/d", "device": "/dev/vdb", "filesystem": "ext4", "label": "d"},
        ),
        ("sshKey", "other-key"),
        ("details", {"nicAdapter": "virtio"}),
        ("affinity", "anti"),
        ("affinityGroupIDs", ["a2"]),
    ],
)
def test_policy_machine_template_immutable_fields(
    testenv: TestBed, namespace: str, field: str, value: Any
) -> None:
    obj = create(testenv, csmt("imm", namespace), INFRA[2])
    obj["spec"]["template"]["spec"][field] = value
    err = rejected(lambda: replace(testenv, obj, INFRA[2]))
    assert err.status == 422
    assert f"spec.template.spec.{field}" in err.body and "immutable" in err.body


def test_policy_machine_template_allows_mutable_fields(testenv: TestBed, namespace: str) -> None:
    obj = create(testenv, csmt("mut", namespace), INFRA[2])
    obj["metadata"]["labels"] = {"team": "a"}
    obj["spec"]["template"]["spec"]["uncompressedUserData"] = True
    updated = replace(testenv, obj, INFRA[2])
    assert updated["spec"]["template"]["spec"]["uncompressedUserData"] is True


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        ("v1.28.5", "v1.29.3", True),
        ("v1.28.5", "v1.29.99", True),
        ("v1.28.5", "v1.28.9", True),
        ("v1.28.5", "v1.27.1", True),  # upstream has no downgrade check in the KCP webhook
        ("v1.28.5", "v1.30.0", False),
        ("v1.28.5", "v1.31.2", False),
        ("v1.28.5", "v2.0.0", False),
    ],
)
def test_policy_control_plane_version_skew(
    testenv: TestBed, namespace: str, start: str, to: str, allowed: bool
) -> None:
    create(testenv, kcp(testenv, "cp", namespace, start), "kubeadmcontrolplanes")
    group = "controlplane.cluster.x-k8s.io"

    def bump() -> dict[str, Any]:
        return custom(testenv).patch_namespaced_custom_object(  # type: ignore[no-any-return]
            group, testenv.capi, namespace, "kubeadmcontrolplanes", "cp", {"spec": {"version": to}}
        )

    if allowed:
        assert bump()["spec"]["version"] == to
    else:
        err = rejected(bump)
        assert err.status == 422
        assert f"cannot update Kubernetes version from {start} to {to}" in err.body


@pytest.mark.parametrize("version", ["1.29.3", "v1.29", "v1.29.x", "latest", "v01.29.3"])
def test_policy_versions_must_be_v_semver(testenv: TestBed, namespace: str, version: str) -> None:
    owners = [(md(testenv, "md", namespace, version), "machinedeployments")]
    if version.startswith("v"):  # KCP defaulting prefixes a missing "v" (test_testenv_policies)
        owners.append((kcp(testenv, "cp", namespace, version), "kubeadmcontrolplanes"))
    for body, plural in owners:
        err = rejected(lambda body=body, plural=plural: create(testenv, body, plural))
        assert err.status == 422, body["kind"]
        assert "must be a valid semantic version" in err.body, body["kind"]


def test_valid_control_plane_and_machine_deployment_are_accepted(testenv: TestBed, namespace: str) -> None:
    assert create(testenv, kcp(testenv, "cp", namespace, "v1.29.3+build.1"), "kubeadmcontrolplanes")
    assert create(testenv, md(testenv, "md", namespace, "v1.29.3-rc.1"), "machinedeployments")


def test_the_audit_log_is_searched_only_for_strings_go_encodes_as_python_does(
    testenv_v1beta2: TestBed,
) -> None:
    """A string Go's JSON encoder writes differently (it escapes <, > and &) would match no line, and a
    test expecting no such request would pass without looking: it is refused instead."""
    from tests.support.fixtures_capc import audit_events, audit_requests, tagged_api_client

    agent = "kubectl-capc-test/audit+search@1"
    client.CoreV1Api(tagged_api_client(testenv_v1beta2.kubeconfig, agent)).list_namespace()
    assert [e["verb"] for e in audit_requests(testenv_v1beta2.audit_log, agent)] == ["list"]
    with pytest.raises(ValueError, match="not a string the audit log is searched for verbatim"):
        next(audit_events(testenv_v1beta2.audit_log, "kubectl-capc-test/<tagged>"))
