"""Permission checks (CAPC-P001): what an upgrade needs, and each missing permission named."""

from __future__ import annotations

from kubectl_capc.domain.checks.facts import Access
from kubectl_capc.domain.checks.permissions import required_access
from tests.support.checks_support import Cloud, ids, inventory_of, render
from tests.support.fixtures_capc import Zone


def test_an_upgrade_needs_secrets_templates_the_owners_and_its_lock() -> None:
    objects = render(
        zones=(Zone("zone1", "net1"), Zone("zone2", "net2", secret_name="z2", secret_namespace="ops"))
    )
    assert [str(a) for a in required_access(inventory_of(objects))] == [
        "get secrets/cloudstack-credentials in namespace default",
        "get secrets/z2 in namespace ops",
        "create cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io in namespace ns",
        "get kubeadmcontrolplanes.controlplane.cluster.x-k8s.io in namespace ns",
        "patch kubeadmcontrolplanes.controlplane.cluster.x-k8s.io in namespace ns",
        "watch kubeadmcontrolplanes.controlplane.cluster.x-k8s.io in namespace ns",
        "get machinedeployments.cluster.x-k8s.io in namespace ns",
        "patch machinedeployments.cluster.x-k8s.io in namespace ns",
        "watch machinedeployments.cluster.x-k8s.io in namespace ns",
        "get leases.coordination.k8s.io in namespace ns",
        "create leases.coordination.k8s.io in namespace ns",
        "update leases.coordination.k8s.io in namespace ns",
        "delete leases.coordination.k8s.io in namespace ns",
    ]


def test_a_missing_watch_is_reported_before_anything_is_patched() -> None:
    denied = [Access("watch", "controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes", "ns")]
    findings = Cloud().check(render(), denied=denied)
    assert [(f.check_id, f.message) for f in findings] == [
        ("CAPC-P001", "you cannot watch kubeadmcontrolplanes.controlplane.cluster.x-k8s.io in namespace ns")
    ]


def test_each_missing_permission_is_one_finding() -> None:
    denied = [
        Access("create", "infrastructure.cluster.x-k8s.io", "cloudstackmachinetemplates", "ns"),
        Access("patch", "cluster.x-k8s.io", "machinedeployments", "ns"),
    ]
    findings = Cloud().check(render(), denied=denied)
    assert ids(findings) == ["CAPC-P001", "CAPC-P001"]
    assert [f.message for f in findings] == [
        "you cannot create cloudstackmachinetemplates.infrastructure.cluster.x-k8s.io in namespace ns",
        "you cannot patch machinedeployments.cluster.x-k8s.io in namespace ns",
    ]


def test_a_missing_lease_permission_is_reported_ahead_of_the_upgrade() -> None:
    denied = [Access("update", "coordination.k8s.io", "leases", "ns")]
    findings = Cloud().check(render(), denied=denied)
    assert [(f.check_id, f.message) for f in findings] == [
        ("CAPC-P001", "you cannot update leases.coordination.k8s.io in namespace ns")
    ]
