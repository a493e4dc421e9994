"""The rollout doctor: one cause per machine that is not progressing, in both Cluster API shapes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kubectl_capc.domain.checks.workload import Pod, PodDisruptionBudget, WorkloadFacts
from kubectl_capc.domain.diagnosis import InfraMachine, OwnerSpec, TemplateReadiness, diagnose
from kubectl_capc.domain.machines import Machine
from kubectl_capc.domain.model import Condition
from kubectl_capc.domain.selectors import LabelSelector

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
MD = OwnerSpec("MachineDeployment", "prod", "md-0", "v1.29.3")
PDB_MESSAGE = (
    "Drain not completed yet (started at 2026-12-06T11:50:00Z):\n* Pods web-1: cannot evict pod as it "
    "would violate the pod's disruption budget. The disruption budget web needs 2 healthy pods and has 2 "
    "currently"
)
V1BETA1_DRAIN = (Condition("DrainingSucceeded", "False", "Draining", PDB_MESSAGE),)
V1BETA2_DRAIN = (Condition("Deleting", "True", "DrainingNode", PDB_MESSAGE),)
WORKLOAD = WorkloadFacts(
    pods=(Pod("shop", "web-1", "n-old", {"app": "web"}),),
    pdbs=(PodDisruptionBudget("shop", "web", LabelSelector({"app": "web"}), 0, 2, 2, 2),),
)


def _machine(**fields: object) -> Machine:
    base: dict[str, object] = {
        "name": "m",
        "namespace": "prod",
        "owner_kind": "MachineDeployment",
        "owner_name": "md-0",
        "version": "v1.29.3",
        "phase": "Running",
        "node_ref": "n1",
        "created": NOW - timedelta(minutes=30),
    }
    return Machine(**{**base, **fields})  # type: ignore[arg-type]


def _cause(
    machine: Machine,
    infra: InfraMachine | None = None,
    workload: WorkloadFacts | None = None,
    templates: dict[tuple[str, str], TemplateReadiness] | None = None,
) -> str:
    status = diagnose(
        "prod",
        "c1",
        [MD],
        [machine],
        infra={"m": infra or InfraMachine()},
        workload=workload,
        templates=templates or {},
        now=NOW,
    )
    return status.owners[0].machines[0].cause


OLD_DELETING = {"version": "v1.28.5", "node_ref": "n-old", "deleting_since": NOW - timedelta(minutes=10)}


@pytest.mark.parametrize("conditions", [V1BETA1_DRAIN, V1BETA2_DRAIN], ids=["v1beta1", "v1beta2"])
def test_drain_blocked_by_pdb_from_the_workload_cluster(conditions: tuple[Condition, ...]) -> None:
    machine = _machine(**OLD_DELETING, conditions=conditions)
    assert (
        _cause(machine, workload=WORKLOAD)
        == "drain blocked by PodDisruptionBudget shop/web (2 healthy, needs 2)"
    )


@pytest.mark.parametrize("conditions", [V1BETA1_DRAIN, V1BETA2_DRAIN], ids=["v1beta1", "v1beta2"])
def test_drain_blocked_by_pdb_from_the_message_alone(conditions: tuple[Condition, ...]) -> None:
    machine = _machine(**OLD_DELETING, conditions=conditions)
    assert _cause(machine) == "drain blocked by PodDisruptionBudget web (2 healthy, needs 2)"


BUDGET = "The disruption budget web needs 2 healthy pods and has 2 currently"
EVICTION = f"cannot evict pod as it would violate the pod's disruption budget. {BUDGET}"


@pytest.mark.parametrize(
    "lines",
    [
        # CAPI v1.10: the error, then the pods it applies to.
        f"* Pods with eviction failed:\n  * {EVICTION.capitalize()}: shop/web-1, shop/web-2",
        # CAPI v1.11 and newer: the pods, then the error.
        f"* Pod kube-system/dns-1: waiting for completion\n* Pods shop/web-1, shop/web-2: {EVICTION}",
    ],
    ids=["capi-1.10", "capi-1.11+"],
)
def test_the_budget_takes_its_namespace_from_the_pods_the_message_lists(lines: str) -> None:
    message = f"Drain not completed yet (started at 2026-12-06T11:50:00Z):\n{lines}"
    machine = _machine(**OLD_DELETING, conditions=(Condition("Deleting", "True", "DrainingNode", message),))
    assert _cause(machine) == "drain blocked by PodDisruptionBudget shop/web (2 healthy, needs 2)"


@pytest.mark.parametrize(
    ("fields", "infra", "templates", "expected"),
    [
        ({}, None, None, ""),
        (
            {"deleting_since": NOW, "conditions": (Condition("Deleting", "True", "WaitingForVolumeDetach"),)},
            None,
            None,
            "waiting for volume detach",
        ),
        (
            {
                "deleting_since": NOW,
                "conditions": (Condition("VolumeDetachSucceeded", "False", "WaitingForVolumeDetach"),),
            },
            None,
            None,
            "waiting for volume detach",
        ),
        (
            {"node_ref": "", "phase": "Provisioning"},
            InfraMachine("Error", "Insufficient capacity"),
            None,
            "VM in Error state: Insufficient capacity",
        ),
        ({"node_ref": "", "phase": "Provisioning"}, InfraMachine("Stopped"), None, "VM is Stopped"),
        (
            {"node_ref": "", "phase": "Provisioning"},
            InfraMachine("", "", "ubuntu-v1.29.3", "zone1"),
            {("ubuntu-v1.29.3", "zone1"): TemplateReadiness(False, "45% Downloaded")},
            "template ubuntu-v1.29.3 not ready in zone zone1 (45% Downloaded)",
        ),
        (
            {"node_ref": "", "phase": "Provisioned"},
            InfraMachine("Running"),
            None,
            "node never joined (no nodeRef after 30 minutes)",
        ),
        (
            {"node_ref": "", "phase": "Provisioned", "created": NOW - timedelta(seconds=90)},
            InfraMachine("Running"),
            None,
            "",
        ),
        ({"node_ref": "", "created": NOW - timedelta(minutes=3)}, InfraMachine("Running"), None, ""),
        (
            {"conditions": (Condition("OwnerRemediated", "False", "WaitingForRemediation"),)},
            None,
            None,
            "MachineHealthCheck remediation in progress",
        ),
    ],
)
def test_one_cause_per_machine(
    fields: dict[str, object],
    infra: InfraMachine | None,
    templates: dict[tuple[str, str], TemplateReadiness] | None,
    expected: str,
) -> None:
    assert _cause(_machine(**fields), infra, templates=templates) == expected


def test_counts_rows_and_document() -> None:
    machines = [
        _machine(name="new"),
        _machine(name="old", **OLD_DELETING, conditions=V1BETA2_DRAIN),
        _machine(name="other", owner_name="md-1"),
    ]
    status = diagnose("prod", "c1", [MD], machines, infra={}, workload=WORKLOAD, templates={}, now=NOW)
    owner = status.owners[0]
    assert (owner.on_new, owner.on_old, status.blocked) == (1, 1, True)
    assert status.rows()[0] == ("MachineDeployment/md-0", "", "v1.29.3", "1 new, 1 old", "")
    assert [row[1] for row in status.rows()[1:]] == ["old"]
    document = status.to_document()
    assert (document["kind"], document["owners"][0]["machines"]) == (
        "RolloutStatus",
        {"total": 2, "new": 1, "old": 1},
    )


def test_a_machine_built_from_another_template_than_its_owners_counts_as_old() -> None:
    owner = OwnerSpec("MachineDeployment", "prod", "md-0", "v1.29.3", "md-0-rebuilt")
    machines = [_machine(name="a"), _machine(name="b"), _machine(name="c")]
    built_from = {"a": "md-0", "b": "md-0-rebuilt"}  # c's template is not known: by its version

    status = diagnose(
        "prod", "c1", [owner], machines, infra={}, workload=None, templates={}, now=NOW, built_from=built_from
    )

    assert [(m.name, m.up_to_date) for m in status.owners[0].machines] == [
        ("a", False),
        ("b", True),
        ("c", True),
    ]
    assert status.rows()[0][3] == "2 new, 1 old"
