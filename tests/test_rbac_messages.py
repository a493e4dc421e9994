"""`forbidden_error`: an RBAC refusal (HTTP 403) as one line saying who may not do which verb on what.

The bodies are the API server's Status objects as RBAC words them; admission refusals, also 403,
must not be mistaken for missing permissions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from kubectl_capc.errors import ExitCode
from kubectl_capc.kube import forbidden_error

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
