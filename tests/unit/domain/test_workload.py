"""Workload preflight checks (CAPC-W0xx) over plain facts."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.checks.base import ObjectRef
from kubectl_capc.domain.checks.workload import (
    DeprecatedApiUse,
    Node,
    Pod,
    PodDisruptionBudget,
    WorkloadFacts,
    WrittenObject,
    check_workload,
    removed_between,
)
from kubectl_capc.domain.durations import parse_go_duration
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.selectors import LabelSelector
from kubectl_capc.domain.versions import Hop, WorkerMove, parse_version

CLUSTER = ObjectRef("Cluster", "prod", "c1")
V = parse_version
CP = Machine(
    "c1-cp-a",
    "prod",
    "KubeadmControlPlane",
    "c1-cp",
    "v1.28.5",
    "cs://cp-a",
    "cp-a",
    node_drain_timeout="10m",
)
MD = Machine(
    "c1-md-a", "prod", "MachineDeployment", "md-0", "v1.28.5", "cs://md-a", "md-a", node_drain_timeout=300
)
HOP = Hop(V("v1.29.3"), V("v1.28.5"), (WorkerMove("md-0", V("v1.28.5")),), "next minor")


def _nodes(**kubelets: str) -> tuple[Node, ...]:
    return tuple(Node(name, True, version, f"cs://{name}") for name, version in kubelets.items())


def _ids(findings: list) -> list[str]:  # type: ignore[type-arg]
    return [f.check_id for f in findings]


def test_healthy_cluster_has_no_findings() -> None:
    facts = WorkloadFacts(_nodes(**{"cp-a": "v1.28.5", "md-a": "v1.28.5"}))
    assert check_workload(CLUSTER, facts, [CP, MD], [HOP], V("v1.28.5")) == []


def test_unreachable_says_what_was_not_checked_and_drain_timeouts_are_still_checked() -> None:
    findings = check_workload(
        CLUSTER,
        WorkloadFacts(unreachable="Secret c1-kubeconfig not found"),
        [CP, Machine("m", "prod", "MachineDeployment", "md-0")],
        [HOP],
        V("v1.28.5"),
    )
    assert _ids(findings) == ["CAPC-W001", "CAPC-W007"]
    assert "c1-kubeconfig" in findings[0].message and "PodDisruptionBudgets" in findings[0].message


def test_not_ready_and_unmatched_nodes_and_machines() -> None:
    nodes = (Node("cp-a", False, "v1.28.5", "cs://cp-a"), Node("stray", True, "v1.28.5", "cs://x"))
    gone = Machine("c1-md-b", "prod", "MachineDeployment", "md-0", "v1.28.5", node_drain_timeout="5m")
    findings = check_workload(CLUSTER, WorkloadFacts(nodes), [CP, gone], [], V("v1.28.5"))
    assert sorted(_ids(findings)) == ["CAPC-W002", "CAPC-W003", "CAPC-W004"]
    assert "cp-a" in findings[0].message


def test_match_by_node_ref_when_provider_id_differs() -> None:
    nodes = (Node("cp-a", True, "v1.28.5", "other"), Node("md-a", True, "v1.28.5", "cs://md-a"))
    assert check_workload(CLUSTER, WorkloadFacts(nodes), [CP, MD], [], V("v1.28.5")) == []


@pytest.mark.parametrize(
    ("kubelet", "hops", "expected"),
    [
        ("v1.25.0", [HOP], ["is more than 3 minors older"]),  # the control plane moves first
        ("v1.26.0", [HOP, Hop(V("v1.30.1"), V("v1.29.3"), (), "cp")], []),  # replaced before v1.30
        ("v1.25.0", [Hop(V("v1.29.3"), V("v1.28.5"), (), "cp only")], ["is more than 3 minors older"]),
        ("v1.29.0", [], ["is newer than the API server"]),
        ("v1.24.0", [], ["is more than 3 minors older"]),
    ],
)
def test_kubelet_skew_per_hop(kubelet: str, hops: list[Hop], expected: list[str]) -> None:
    facts = WorkloadFacts(_nodes(**{"cp-a": "v1.28.5", "md-a": kubelet}))
    findings = check_workload(CLUSTER, facts, [CP, MD], hops, V("v1.28.5"))
    assert [e in f.message for f, e in zip(findings, expected, strict=True)] == [True] * len(expected)
    assert all(f.check_id == "CAPC-W005" for f in findings)


def test_pdb_allowing_no_disruption_on_drained_node_is_named_with_pods_and_nodes() -> None:
    pods = (
        Pod("shop", "web-1", "md-a", {"app": "web"}),
        Pod("shop", "web-2", "elsewhere", {"app": "web"}),
        Pod("shop", "done", "md-a", {"app": "web"}, phase="Succeeded"),
        Pod("shop", "agent", "md-a", {"app": "web"}, owner_kind="DaemonSet"),
    )
    pdbs = (
        PodDisruptionBudget("shop", "web", LabelSelector({"app": "web"}), 0, 2, 2, 2),
        PodDisruptionBudget("shop", "loose", LabelSelector({"app": "web"}), 1, 2, 1, 2),
        PodDisruptionBudget("shop", "null", None, 0, 0, 0, 0),
    )
    facts = WorkloadFacts(_nodes(**{"cp-a": "v1.28.5", "md-a": "v1.28.5"}), pods, pdbs)
    findings = check_workload(CLUSTER, facts, [CP, MD], [HOP], V("v1.28.5"))
    assert _ids(findings) == ["CAPC-W006"]
    assert findings[0].subject == ObjectRef("PodDisruptionBudget", "shop", "web")
    assert "shop/web-1" in findings[0].message and "md-a" in findings[0].message
    assert "done" not in findings[0].message and "agent" not in findings[0].message
    assert check_workload(CLUSTER, facts, [CP, MD], [], V("v1.28.5")) == []  # nothing drained


@pytest.mark.parametrize(
    ("timeout", "warned"), [(None, True), ("0s", True), (0, True), ("1h30m", False), (60, False)]
)
def test_drain_timeout_in_both_shapes(timeout: str | int | None, warned: bool) -> None:
    machine = Machine(
        "m", "prod", "MachineDeployment", "md-0", "v1.28.5", "cs://md-a", node_drain_timeout=timeout
    )
    facts = WorkloadFacts(_nodes(**{"md-a": "v1.28.5"}))
    assert ("CAPC-W007" in _ids(check_workload(CLUSTER, facts, [machine], [HOP], V("v1.28.5")))) is warned


def test_parse_duration() -> None:
    assert [parse_go_duration(text) for text in ("1h30m", "1.5s", "0", "-2m")] == [5400.0, 1.5, 0.0, -120.0]
    with pytest.raises(ValueError):
        parse_go_duration("10 minutes")


def test_removed_apis_between_current_and_target_are_named_with_their_release() -> None:
    uses = (
        DeprecatedApiUse("flowcontrol.apiserver.k8s.io", "v1beta2", "flowschemas", "", "1.29"),
        DeprecatedApiUse("batch", "v1beta1", "cronjobs", "", "1.25"),  # already gone
        DeprecatedApiUse("x", "v1", "later", "", "1.32"),  # beyond target
        DeprecatedApiUse("y", "v1", "unknown", "", ""),
    )
    facts = WorkloadFacts(_nodes(**{"cp-a": "v1.28.5", "md-a": "v1.28.5"}), deprecated_apis=uses)
    findings = check_workload(CLUSTER, facts, [CP, MD], [HOP], V("v1.28.5"))
    assert _ids(findings) == ["CAPC-W008"]
    assert "flowcontrol.apiserver.k8s.io/v1beta2 flowschemas, removed in v1.29" in findings[0].message
    unread = WorkloadFacts(
        _nodes(**{"cp-a": "v1.28.5", "md-a": "v1.28.5"}), deprecated_apis=None, metrics_error="403"
    )
    assert _ids(check_workload(CLUSTER, unread, [CP, MD], [HOP], V("v1.28.5"))) == ["CAPC-W009"]


FLOWCONTROL = "flowcontrol.apiserver.k8s.io"


def _written(name: str, *versions: str, resource: str = "flowschemas", namespace: str = "") -> WrittenObject:
    """Written by manager `m0` in the first version, `m1` in the second..."""
    return WrittenObject(
        FLOWCONTROL, resource, namespace, name, tuple((f"m{i}", v) for i, v in enumerate(versions))
    )


def test_removed_between_takes_the_releases_after_the_current_minor_up_to_the_target() -> None:
    removed = removed_between(V("v1.28.5"), V("v1.32.0"))
    assert sorted({(api.api_version, api.removed) for api in removed}) == [
        (f"{FLOWCONTROL}/v1beta2", (1, 29)),
        (f"{FLOWCONTROL}/v1beta3", (1, 32)),
    ]
    assert removed_between(V("v1.29.0"), (1, 31)) == ()
    assert {api.resource for api in removed_between(V("v1.24.1"), (1, 25))} >= {"cronjobs", "events"}


def test_objects_written_in_a_version_the_upgrade_removes_are_named_with_release_and_replacement() -> None:
    facts = WorkloadFacts(
        _nodes(**{"cp-a": "v1.28.5", "md-a": "v1.28.5"}),
        written=(
            _written("team-a", f"{FLOWCONTROL}/v1beta2", f"{FLOWCONTROL}/v1beta3"),
            _written("system", f"{FLOWCONTROL}/v1beta3"),  # its writers use a version 1.29 keeps
            _written("slow", f"{FLOWCONTROL}/v1beta2", resource="prioritylevelconfigurations"),
            _written("later", f"{FLOWCONTROL}/v1beta3", resource="prioritylevelconfigurations"),
        ),
    )
    findings = check_workload(CLUSTER, facts, [CP, MD], [HOP], V("v1.28.5"))
    assert _ids(findings) == ["CAPC-W008", "CAPC-W008"]
    assert [f.message for f in findings] == [
        f"1 object(s) of flowschemas were written as {FLOWCONTROL}/v1beta2, removed in v1.29 (upgrade to "
        f"v1.29.3): team-a (m0); write them as {FLOWCONTROL}/v1beta3",
        f"1 object(s) of prioritylevelconfigurations were written as {FLOWCONTROL}/v1beta2, removed in "
        f"v1.29 (upgrade to v1.29.3): slow (m0); write them as {FLOWCONTROL}/v1beta3",
    ]
    assert all(f.severity.value == "error" for f in findings)
    # Without a plan nothing is removed.
    assert _ids(check_workload(CLUSTER, facts, [CP, MD], [], V("v1.28.5"))) == []


def test_objects_that_could_not_be_listed_are_a_warning_and_the_metric_still_counts() -> None:
    uses = (DeprecatedApiUse(FLOWCONTROL, "v1beta2", "flowschemas", "", "1.29"),)
    facts = WorkloadFacts(
        _nodes(**{"cp-a": "v1.28.5", "md-a": "v1.28.5"}),
        deprecated_apis=uses,
        written=None,
        written_error="list flowschemas: HTTP 403 forbidden",
    )
    findings = check_workload(CLUSTER, facts, [CP, MD], [HOP], V("v1.28.5"))
    assert sorted(_ids(findings)) == ["CAPC-W008", "CAPC-W009"]
    (unread,) = [f for f in findings if f.check_id == "CAPC-W009"]
    assert "(list flowschemas: HTTP 403 forbidden)" in unread.message
    assert _ids(check_workload(CLUSTER, facts, [CP, MD], [], V("v1.28.5"))) == []
    # An unreadable metric does not hide the objects.
    both = WorkloadFacts(
        facts.nodes, deprecated_apis=None, written=(_written("team-a", f"{FLOWCONTROL}/v1beta2"),)
    )
    assert sorted(_ids(check_workload(CLUSTER, both, [CP, MD], [HOP], V("v1.28.5")))) == [
        "CAPC-W008",
        "CAPC-W009",
    ]
