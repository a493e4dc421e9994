"""The workload checks inside `run_checks`: planned from the inventory and `--to`, only when read."""

from __future__ import annotations

from dataclasses import replace

from kubectl_capc.domain.checks import run_checks
from kubectl_capc.domain.checks.upgrade import planned_hops
from kubectl_capc.domain.checks.workload import Node, WorkloadFacts, WorkloadReading
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.versions import parse_target, parse_version
from tests.support.checks_support import Cloud, ids, inventory_of, render

WORKER = Machine("c1-md-0-a", "ns", "MachineDeployment", "c1-md-0", "v1.28.5", "cs://a", "a")


def _facts(cloud: Cloud, reading: WorkloadReading | None, target: str | None = None):  # type: ignore[no-untyped-def]
    inventory = inventory_of(render())
    parsed = parse_target(target) if target else None
    facts = cloud.facts([inventory], parsed)
    if reading is not None:
        facts = replace(facts, workloads={("ns", "c1"): reading})
    return inventory, facts, parsed


def test_hops_come_from_the_templates_the_zones_hold() -> None:
    inventory, facts, target = _facts(Cloud(), None, "v1.29")
    (hop,) = planned_hops(inventory, facts, target)
    assert hop.version == parse_version("v1.29.3") and hop.moves_control_plane
    assert [move.name for move in hop.workers] == ["c1-md-0"]
    assert planned_hops(inventory, facts, None) == ()


def test_without_usable_templates_each_minor_is_one_hop_at_its_target_patch() -> None:
    inventory, facts, target = _facts(Cloud(templates=[]), None, "v1.30")
    assert [str(hop.version) for hop in planned_hops(inventory, facts, target)] == ["v1.29.0", "v1.30.0"]


def test_a_downgrade_plans_nothing() -> None:
    inventory, facts, target = _facts(Cloud(), None, "v1.27")
    assert planned_hops(inventory, facts, target) == ()


def test_a_cluster_whose_workload_was_not_read_gets_no_workload_findings() -> None:
    inventory, facts, target = _facts(Cloud(), None, "v1.29")
    assert not [f for f in run_checks(inventory, facts, target) if f.check_id.startswith("CAPC-W")]


def test_workload_findings_join_the_report_in_order() -> None:
    nodes = (Node("a", False, "v1.28.5", "cs://a"),)
    reading = WorkloadReading(WorkloadFacts(nodes), (WORKER,))
    inventory, facts, target = _facts(Cloud(), reading, "v1.29")
    assert ids(run_checks(inventory, facts, target)) == ["CAPC-W002", "CAPC-W007"]
    unreachable = WorkloadReading(WorkloadFacts(unreachable="Secret ns/c1-kubeconfig not found"), (WORKER,))
    inventory, facts, target = _facts(Cloud(), unreachable)
    findings = run_checks(inventory, facts, target)
    assert ids(findings) == ["CAPC-W001"]
    assert "Secret ns/c1-kubeconfig not found" in findings[0].message


def test_kubelet_skew_follows_the_planned_hops() -> None:
    old = (Node("a", True, "v1.25.0", "cs://a"),)
    reading = WorkloadReading(WorkloadFacts(old), (WORKER,))
    inventory, facts, target = _facts(Cloud(templates=[]), reading, "v1.30")
    skew = [f for f in run_checks(inventory, facts, target) if f.check_id == "CAPC-W005"]
    assert [f.message for f in skew] == [
        "kubelet v1.25.0 is more than 3 minors older than the API server v1.29.0 during the v1.29.0 hop: "
        "node(s) a"
    ]
