"""docs/rbac.yaml is ready to apply and grants what an upgrade asks for, in the bound namespace only.

It is applied for real on the test bed, and `kubectl auth can-i`, impersonating a member of the bound
group, must answer yes for every permission `validate` checks ahead of an upgrade (`required_access`)
and no for what the role leaves out. Every command is run with the role in tests/testbed/test_rbac_role.py
and tests/testbed/test_rbac_removal.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from kubectl_capc.domain.checks.facts import Access
from kubectl_capc.domain.checks.permissions import required_access
from tests.support.checks_support import inventory_of
from tests.support.fixtures_capc import Zone, render_cluster, with_settled_status
from tests.testenv.bed import TestBed

RBAC = Path(__file__).resolve().parents[2] / "docs" / "rbac.yaml"


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc]


def upgrade_access(namespace: str) -> tuple[Access, ...]:
    zones = (
        Zone("zone-a", "net-a", secret_namespace=namespace),
        Zone("zone-b", "net-b", secret_namespace=namespace),
    )
    objects = with_settled_status(render_cluster("c1", namespace, capi="v1beta2", zones=zones, md_count=2))
    return required_access(inventory_of(objects))


def grants(rules: list[dict[str, Any]], access: Access) -> bool:
    return any(
        access.group in rule["apiGroups"]
        and access.resource in rule["resources"]
        and access.verb in rule["verbs"]
        and (not rule.get("resourceNames") or access.name in rule["resourceNames"])
        for rule in rules
    )


def test_role_and_binding_fit_together_and_name_no_namespace() -> None:
    role, binding = documents()
    assert (role["kind"], binding["kind"]) == ("ClusterRole", "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    # `kubectl apply -n NAMESPACE` puts the binding there; a ClusterRole has no namespace.
    assert "namespace" not in role["metadata"] and "namespace" not in binding["metadata"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule


def test_role_grants_every_permission_validate_checks() -> None:
    (role, _) = documents()
    needed = upgrade_access("prod")
    assert {a.verb for a in needed} == {"get", "create", "patch", "watch", "update", "delete"}
    assert [a for a in needed if not grants(role["rules"], a)] == []


def can_i(bed: TestBed, namespace: str, group: str, verb: str, resource: str) -> str:
    result = subprocess.run(
        [str(bed.kubectl), "--kubeconfig", str(bed.kubeconfig), "auth", "can-i", verb, resource,
         "-n", namespace, "--as", "someone", "--as-group", group],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip()


def test_applied_role_lets_the_bound_group_upgrade(testenv_v1beta2: TestBed, namespace: str) -> None:
    bed = testenv_v1beta2
    applied = subprocess.run(
        [str(bed.kubectl), "--kubeconfig", str(bed.kubeconfig), "apply", "-n", namespace, "-f", str(RBAC)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    (_, binding) = documents()
    group = binding["subjects"][0]["name"]

    for access in upgrade_access(namespace):
        resource = f"{access.resource}.{access.group}" if access.group else access.resource
        target = f"{resource}/{access.name}" if access.name else resource
        assert can_i(bed, namespace, group, access.verb, target) == "yes", access

    assert can_i(bed, namespace, group, "watch", "machinedeployments.cluster.x-k8s.io") == "yes"
    assert can_i(bed, namespace, group, "delete", "machinedeployments.cluster.x-k8s.io") == "no"
    assert can_i(bed, namespace, group, "update", "leases.coordination.k8s.io") == "yes"
    assert can_i(bed, namespace, group, "list", "leases.coordination.k8s.io") == "no"
    assert can_i(bed, namespace, group, "list", "secrets") == "no"
    assert can_i(bed, "default", group, "patch", "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io") == "no"
    assert (
        can_i(bed, namespace, "someone-else", "patch", "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io")
        == "no"
    )
