"""`forbidden_error`: an RBAC refusal (HTTP 403) as one line saying who may not do which verb on what.

The bodies are the API server's Status objects as RBAC words them; admission refusals, also 403,
must not be mistaken for missing permissions. Writes (`kube_write`) word a refusal the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from kubectl_capc.domain.errors import ExitCode, KubeApiError
from kubectl_capc.kube.errors import forbidden_error
from kubectl_capc.kube.write import KubeWriter, Rejected
from tests.unit.kube.test_refusal_wording import CannedApiClient, status

USER = "system:serviceaccount:prod:deployer"


@dataclass
class FakeApiException:
    """The attributes of kubernetes.client.exceptions.ApiException that the mapping reads."""

    status: int
    body: str | None
    reason: str = "Forbidden"


def refusal(message: str, **details: Any) -> FakeApiException:
    body = {"kind": "Status", "status": "Failure", "message": message, "reason": "Forbidden", "code": 403}
    return FakeApiException(403, json.dumps({**body, "details": details}))


@pytest.mark.parametrize(
    ("message", "details", "expected"),
    [
        (
            f'clusters.cluster.x-k8s.io is forbidden: User "{USER}" cannot list resource "clusters" in API '
            'group "cluster.x-k8s.io" in the namespace "prod"',
            {"group": "cluster.x-k8s.io", "kind": "clusters"},
            "cannot list clusters.cluster.x-k8s.io in namespace prod",
        ),
        (
            f'secrets "cloudstack-credentials" is forbidden: User "{USER}" cannot get resource "secrets" in '
            'API group "" in the namespace "default"',
            {"name": "cloudstack-credentials", "kind": "secrets"},
            "cannot get secrets/cloudstack-credentials in namespace default",
        ),
        (
            f'machinedeployments.cluster.x-k8s.io "c1-md-0" is forbidden: User "{USER}" cannot patch '
            'resource "machinedeployments/scale" in API group "cluster.x-k8s.io" in the namespace "prod"',
            {"name": "c1-md-0", "group": "cluster.x-k8s.io", "kind": "machinedeployments"},
            "cannot patch machinedeployments.cluster.x-k8s.io/c1-md-0/scale in namespace prod",
        ),
        (
            f'clusters.cluster.x-k8s.io is forbidden: User "{USER}" cannot watch resource "clusters" in API '
            'group "cluster.x-k8s.io" at the cluster scope',
            {"group": "cluster.x-k8s.io", "kind": "clusters"},
            "cannot watch clusters.cluster.x-k8s.io at cluster scope",
        ),
    ],
)
def test_rbac_refusals_name_user_verb_resource_and_scope(
    message: str, details: dict[str, Any], expected: str
) -> None:
    error = forbidden_error("read cluster c1", refusal(message, **details))
    assert error is not None
    assert error.exit_code == ExitCode.KUBE_API
    assert error.message == f"read cluster c1: forbidden: {USER} {expected}"
    assert "\n" not in str(error) and "Role" in str(error)


@pytest.mark.parametrize(
    "err",
    [
        # An admission webhook or policy refusing the object is not a missing permission.
        refusal('admission webhook "validation.example.com" denied the request: version is pinned'),
        refusal(
            'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io "c1" is forbidden: ValidatingAdmissionPolicy'
            " 'capc-skew' denied request: cannot skip a minor"
        ),
        FakeApiException(403, "not json"),
        FakeApiException(403, None),
        FakeApiException(
            404, json.dumps({"message": f'User "{USER}" cannot get resource "x" in API group ""'})
        ),
    ],
)
def test_anything_else_is_left_to_the_caller(err: FakeApiException) -> None:
    assert forbidden_error("patch KubeadmControlPlane/c1", err) is None


TEMPLATE = {
    "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
    "kind": "CloudStackMachineTemplate",
    "metadata": {"name": "c1-md-0-v1-29-3", "namespace": "prod"},
    "spec": {"template": {"spec": {"template": {"name": "ubuntu-2204-kube-v1.29.3"}}}},
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
def test_a_write_refused_by_rbac_is_worded_like_a_read(dry_run: bool) -> None:
    """The upgrade's writes go through the same wording as reads: verb, resource and scope, exit 4."""
    message = (
        "cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io is forbidden: User "
        f'"{USER}" cannot create resource "cloudstackmachinetemplates" in API group '
        '"infrastructure.cluster.x-k8s.io" in the namespace "prod"'
    )
    body = status(403, message, group="infrastructure.cluster.x-k8s.io", kind="cloudstackmachinetemplates")
    writer = KubeWriter(CannedApiClient(403, body), "prod", "v1beta2")
    with pytest.raises(KubeApiError) as raised:
        writer.create_template(TEMPLATE, dry_run=dry_run)
    assert not isinstance(raised.value, Rejected)
    assert raised.value.exit_code == ExitCode.KUBE_API
    assert raised.value.message == (
        f"create CloudStackMachineTemplate/c1-md-0-v1-29-3: forbidden: {USER} cannot create "
        "cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io in namespace prod"
    )
    read = forbidden_error("read", refusal(message))
    assert read is not None and raised.value.hint == read.hint


def test_a_write_refused_by_admission_is_a_refusal_of_the_object() -> None:
    message = (
        'cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io "c1-md-0-v1-29-3" is forbidden: '
        "ValidatingAdmissionPolicy 'pinned-images' denied request: cannot use an unpinned image"
    )
    writer = KubeWriter(CannedApiClient(403, status(403, message)), "prod", "v1beta2")
    with pytest.raises(Rejected) as raised:
        writer.create_template(TEMPLATE, dry_run=True)
    assert raised.value.message.endswith(f"the API server refused it: {message}")
