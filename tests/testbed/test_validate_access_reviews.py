"""`validate -A` over several namespaces: permissions are asked once for all namespaces, and one by one
only where that is denied, so the answer per namespace stays exact for users bound by namespaced Roles.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubectl_capc.__main__ import main
from tests.support.rbac_support import service_account_token, token_kubeconfig
from tests.support.upgrade_support import create_cluster
from tests.testenv.bed import TestBed

CAPC_GROUP = "infrastructure.cluster.x-k8s.io"
READ = ["get", "list", "watch"]


def rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, list[str]]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


READ_CLUSTERS = [
    rule("cluster.x-k8s.io", ["clusters", "machinedeployments", "machines"], READ),
    rule("controlplane.cluster.x-k8s.io", ["kubeadmcontrolplanes"], READ),
    rule("bootstrap.cluster.x-k8s.io", ["kubeadmconfigtemplates"], READ),
    rule(CAPC_GROUP, ["cloudstackclusters", "cloudstackmachinetemplates", "cloudstackmachines"], READ),
]
UPGRADE = [
    rule(CAPC_GROUP, ["cloudstackmachinetemplates"], ["create"]),
    rule("controlplane.cluster.x-k8s.io", ["kubeadmcontrolplanes"], ["patch"]),
    rule("cluster.x-k8s.io", ["machinedeployments"], ["patch"]),
    rule("coordination.k8s.io", ["leases"], ["get", "create", "update", "delete"]),
]


@dataclass(frozen=True)
class Scene:
    bed: TestBed
    allowed: str  # the namespace where the restricted user may upgrade
    denied: str  # the namespace where it may not


@pytest.fixture(scope="module")
def scene(testenv_v1beta2: TestBed) -> Iterator[Scene]:
    from kubernetes import client

    bed = testenv_v1beta2
    core = client.CoreV1Api(bed.api_client())
    run = uuid.uuid4().hex[:8]
    namespaces = [f"reviews-{run}-allowed", f"reviews-{run}-denied"]
    for namespace in namespaces:
        core.create_namespace({"metadata": {"name": namespace}})
    try:
        for namespace in namespaces:
            create_cluster(bed, namespace, md_count=1)
        yield Scene(bed, *namespaces)
    finally:
        for namespace in namespaces:
            core.delete_namespace(namespace)


def login(bed: TestBed, namespace: str, name: str, tmp_path: Path) -> tuple[Path, str]:
    """A kubeconfig for a new ServiceAccount, and its user name in the audit log."""
    token = service_account_token(bed, namespace, name, seconds=600)
    kubeconfig = token_kubeconfig(bed, tmp_path / f"{name}.kubeconfig", name, token)
    return kubeconfig, f"system:serviceaccount:{namespace}:{name}"


def bind(bed: TestBed, user: str, role: str, *, namespace: str | None = None) -> None:
    """Bind the ServiceAccount `user` to ClusterRole `role`, in `namespace` or cluster-wide."""
    from kubernetes import client

    _, _, sa_namespace, sa_name = user.split(":")
    rbac = client.RbacAuthorizationV1Api(bed.api_client())
    body = {
        "metadata": {"name": f"{sa_namespace}-{sa_name}-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}],
    }
    if namespace is None:
        rbac.create_cluster_role_binding(body)
    else:
        rbac.create_namespaced_role_binding(namespace, body)


def wait_until_allowed(
    bed: TestBed, user: str, *, verb: str, group: str, resource: str, namespace: str
) -> None:
    """Bindings reach the authorizer asynchronously: wait until it grants `user` what was bound."""
    from kubernetes import client

    auth = client.AuthorizationV1Api(bed.api_client())
    attributes = {"verb": verb, "group": group, "resource": resource, "namespace": namespace}
    deadline = time.monotonic() + 30
    while not auth.create_subject_access_review(
        {"spec": {"user": user, "resourceAttributes": attributes}}
    ).status.allowed:
        assert time.monotonic() < deadline, f"{user} was not allowed to {verb} {resource} in time"
        time.sleep(0.1)


def validate_all(bed: TestBed, kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    code = main(["validate", "-A", "-o", "json", "--kubeconfig", str(kubeconfig)])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    document: dict[str, Any] = json.loads(out)
    return document


def reviews_by(bed: TestBed, user: str, offset: int) -> list[dict[str, Any]]:
    with bed.audit_log.open() as lines:
        lines.seek(offset)
        events = [json.loads(line) for line in lines]
    return [
        event
        for event in events
        if event["stage"] == "ResponseComplete"
        and event["user"]["username"] == user
        and (event.get("objectRef") or {}).get("resource") == "selfsubjectaccessreviews"
    ]


def permission_messages(document: dict[str, Any], namespace: str) -> list[str]:
    (cluster,) = [c for c in document["clusters"] if c["namespace"] == namespace]
    return sorted(f["message"] for f in cluster["findings"] if f["id"] == "CAPC-P001")


def test_a_cluster_admin_is_asked_once_per_kind_of_permission(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, user = login(scene.bed, scene.allowed, "operator", tmp_path)
    bind(scene.bed, user, "cluster-admin")
    wait_until_allowed(
        scene.bed, user, verb="patch", group="cluster.x-k8s.io", resource="machinedeployments",
        namespace=scene.denied,
    )  # fmt: skip
    offset = scene.bed.audit_log.stat().st_size

    document = validate_all(scene.bed, kubeconfig, capsys)

    assert permission_messages(document, scene.allowed) == []
    assert permission_messages(document, scene.denied) == []
    # Every cluster of the bed, in however many namespaces: one review each for get secrets, create
    # templates, get, patch and watch of control planes and of MachineDeployments, and get, create,
    # update and delete of the upgrade lock's Lease; never one per namespace.
    assert len(reviews_by(scene.bed, user, offset)) <= 12


def test_a_user_bound_in_one_namespace_is_told_exactly_what_it_lacks_in_the_other(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubernetes import client

    kubeconfig, user = login(scene.bed, scene.allowed, "team", tmp_path)
    rbac = client.RbacAuthorizationV1Api(scene.bed.api_client())
    for name, rules in ((f"{scene.allowed}-read", READ_CLUSTERS), (f"{scene.allowed}-upgrade", UPGRADE)):
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
    bind(scene.bed, user, f"{scene.allowed}-read")
    bind(scene.bed, user, f"{scene.allowed}-upgrade", namespace=scene.allowed)
    wait_until_allowed(
        scene.bed, user, verb="list", group="cluster.x-k8s.io", resource="clusters", namespace=""
    )
    wait_until_allowed(
        scene.bed, user, verb="patch", group="cluster.x-k8s.io", resource="machinedeployments",
        namespace=scene.allowed,
    )  # fmt: skip

    document = validate_all(scene.bed, kubeconfig, capsys)

    secret = "you cannot get secrets/cloudstack-credentials in namespace default"
    assert permission_messages(document, scene.allowed) == [secret]
    assert permission_messages(document, scene.denied) == [
        f"you cannot create cloudstackmachinetemplates.{CAPC_GROUP} in namespace {scene.denied}",
        f"you cannot create leases.coordination.k8s.io in namespace {scene.denied}",
        f"you cannot delete leases.coordination.k8s.io in namespace {scene.denied}",
        f"you cannot get leases.coordination.k8s.io in namespace {scene.denied}",
        secret,
        f"you cannot patch kubeadmcontrolplanes.controlplane.cluster.x-k8s.io in namespace {scene.denied}",
        f"you cannot patch machinedeployments.cluster.x-k8s.io in namespace {scene.denied}",
        f"you cannot update leases.coordination.k8s.io in namespace {scene.denied}",
    ]
