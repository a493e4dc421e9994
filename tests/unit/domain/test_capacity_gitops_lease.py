"""CloudStack surge headroom, GitOps owner markers and the upgrade Lease decision."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kubectl_capc.domain.checks.base import ObjectRef
from kubectl_capc.domain.checks.capacity import (
    Level,
    MachineShape,
    Resource,
    ResourceCount,
    ScopeLimits,
    Step,
    check_capacity,
    control_plane_surge,
    deployment_surge,
    parse_count,
    resolve_max_surge,
)
from kubectl_capc.domain.checks.gitops_owners import check_gitops, gitops_owners
from kubectl_capc.domain.lease import (
    LEASE_DURATION_SECONDS,
    LeaseRecord,
    LeaseVerdict,
    decide,
    fleet_lease_seconds,
    holder_identity,
    lease_name,
    renew_interval,
)
from kubectl_capc.domain.model import RolloutStrategy

SUBJECT = ObjectRef("CloudStackCluster", "prod", "c1")
SHAPE = MachineShape(cpus=2, memory_mib=4096, disk_gib=20)


@pytest.mark.parametrize(
    ("max_surge", "replicas", "expected"),
    [
        (None, 3, 1),
        (2, 3, 2),
        ("2", 3, 2),
        ("25%", 3, 1),
        ("34%", 3, 2),
        ("100%", 3, 3),
        ("200%", 3, 3),
        (5, 2, 2),
        (0, 3, 0),
        ("0%", 3, 0),
        ("10%", 0, 0),
    ],
)
def test_max_surge_rounds_percentages_up_and_is_capped_by_replicas(
    max_surge: int | str | None, replicas: int, expected: int
) -> None:
    assert resolve_max_surge(max_surge, replicas) == expected


def test_bad_max_surge_is_refused() -> None:
    with pytest.raises(ValueError, match="maxSurge"):
        resolve_max_surge("a lot", 3)


@pytest.mark.parametrize(
    ("value", "expected"), [("Unlimited", None), (-1, None), ("-1", None), (None, None), ("12", 12), (0, 0)]
)
def test_limit_figures(value: str | int | None, expected: int | None) -> None:
    assert parse_count(value) == expected


def _scope(level: Level, name: str, cpu: ResourceCount) -> ScopeLimits:
    return ScopeLimits(level, name, {Resource.CPU: cpu})


def test_peak_is_the_largest_step_and_each_level_is_compared() -> None:
    account = _scope(Level.ACCOUNT, "acme", ResourceCount(None, 40, None))  # Unlimited
    domain = _scope(Level.DOMAIN, "ROOT/acme", ResourceCount(50, 45, 5))
    placement = (account, domain)
    md = ObjectRef("MachineDeployment", "prod", "md-0")
    md1 = ObjectRef("MachineDeployment", "prod", "md-1")
    steps = [
        Step(ObjectRef("KubeadmControlPlane", "prod", "cp"), control_plane_surge(None, 3), SHAPE, placement),
        # 3 machines x 2 vCPU = 6 > 5
        Step(md, deployment_surge(RolloutStrategy(max_surge="50%"), 6), SHAPE, placement),
        Step(md1, deployment_surge(RolloutStrategy(max_surge=1), 2), SHAPE, placement),
    ]
    findings = check_capacity(steps, SUBJECT)
    assert [f.message for f in findings] == [
        "domain ROOT/acme has 5 vCPU free; the rollout needs 6 at its peak "
        "(MachineDeployment/md-0: 3 surge machine(s))"
    ]
    steps[1] = Step(md, deployment_surge(RolloutStrategy("OnDelete", "50%"), 6), SHAPE, placement)
    assert check_capacity(steps, SUBJECT) == []


def test_free_falls_back_to_limit_minus_total() -> None:
    scope = _scope(Level.PROJECT, "p", ResourceCount(10, 9, None))
    cp = ObjectRef("KubeadmControlPlane", "prod", "cp")
    step = Step(cp, control_plane_surge(1, 3), SHAPE, (scope,))
    assert "project p has 1 vCPU free; the rollout needs 2" in check_capacity([step], SUBJECT)[0].message
    assert check_capacity([Step(cp, control_plane_surge(0, 3), SHAPE, (scope,))], SUBJECT) == []


KCP = ObjectRef("KubeadmControlPlane", "prod", "cp")
FLUX = {"kustomize.toolkit.fluxcd.io/name": "infra", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}


@pytest.mark.parametrize(
    ("labels", "annotations", "owners"),
    [
        ({}, {}, []),
        (FLUX, {}, ["Flux Kustomization flux-system/infra"]),
        (FLUX, {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}, []),
        (FLUX, {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}, []),
        (FLUX, {"kustomize.toolkit.fluxcd.io/ssa": "Ignore"}, []),
        (FLUX, {"kustomize.toolkit.fluxcd.io/ssa": "Merge"}, ["Flux Kustomization flux-system/infra"]),
        (
            {"helm.toolkit.fluxcd.io/name": "capi", "helm.toolkit.fluxcd.io/namespace": "ops"},
            {},
            ["Flux HelmRelease ops/capi"],
        ),
        (
            {},
            {"argocd.argoproj.io/tracking-id": "clusters:cluster.x-k8s.io/Cluster:prod/c1"},
            ["Argo CD Application clusters"],
        ),
        ({"app.kubernetes.io/instance": "c1-app"}, {}, ["Argo CD Application c1-app"]),
        ({}, {"argocd.argoproj.io/tracking-id": "garbage"}, []),
    ],
)
def test_gitops_markers(labels: dict[str, str], annotations: dict[str, str], owners: list[str]) -> None:
    assert [str(owner) for owner in gitops_owners(labels, annotations)] == owners


def test_gitops_finding_names_the_owner_and_gitops_mode() -> None:
    (finding,) = check_gitops(KCP, FLUX, {})
    assert finding.check_id == "CAPC-G001"
    assert "flux-system/infra" in finding.message and "-f" in finding.hint


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
ME = holder_identity("ann", "laptop", 42)
HOUR_AGO = NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("lease", "verdict"),
    [
        (None, LeaseVerdict.FREE),
        (LeaseRecord(), LeaseVerdict.FREE),
        (LeaseRecord(ME, NOW, NOW, 60), LeaseVerdict.OURS),
        (
            LeaseRecord("bob@host/7", HOUR_AGO, NOW - timedelta(seconds=30), 60),
            LeaseVerdict.HELD,
        ),
        (
            LeaseRecord("bob@host/7", HOUR_AGO, NOW - timedelta(seconds=60), 60),
            LeaseVerdict.EXPIRED,
        ),
        (LeaseRecord("bob@host/7", None, None, 60), LeaseVerdict.HELD),
        (LeaseRecord("ann@laptop/43", NOW, NOW, 60), LeaseVerdict.HELD),
    ],
)
def test_lease_decision(lease: LeaseRecord | None, verdict: LeaseVerdict) -> None:
    decision = decide(lease, ME, NOW)
    assert decision.verdict is verdict
    assert decision.may_take is (verdict is not LeaseVerdict.HELD)


def test_held_message_names_holder_and_since() -> None:
    lease = LeaseRecord("bob@host/7", NOW - timedelta(hours=1), NOW, 60)
    assert decide(lease, ME, NOW).message == (
        "another upgrade of this cluster is running: locked by bob@host/7 since 2026-12-06T11:00:00+00:00"
    )


def test_lease_names_are_valid_and_distinct_when_cut() -> None:
    assert (ME, lease_name("c1")) == ("ann@laptop/42", "kubectl-capc-upgrade-c1")
    long_a, long_b = lease_name("a" * 250 + "x"), lease_name("a" * 250 + "y")
    assert len(long_a) <= 253 and long_a != long_b


def test_a_fleets_renewals_together_come_no_more_often_than_one_clusters() -> None:
    one_cluster_rate = 1 / renew_interval()
    for concurrent in (1, 2, 5, 20):
        fleet_rate = concurrent / renew_interval(fleet_lease_seconds(concurrent))
        assert fleet_rate <= one_cluster_rate
    assert fleet_lease_seconds(1) == LEASE_DURATION_SECONDS  # a fleet of one locks as one run does
    assert fleet_lease_seconds(0) == LEASE_DURATION_SECONDS
